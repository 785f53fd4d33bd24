"""The HTTP gateway: routes, API keys and roles, rate limits. No business logic and no Ray."""
