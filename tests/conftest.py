"""Test tiers: ``tests/unit`` never starts Ray or touches the network; ``tests/integration``
talks to a real local Ray, PostgreSQL and Redis."""
