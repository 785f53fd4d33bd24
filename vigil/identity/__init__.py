"""Customer identity: sign-up and sign-in with argon2id passwords, device binding, short-lived
access tokens with rotated refresh tokens, throttled failed sign-ins (:mod:`.service`), and what a
signed-in customer may see of their own data (:mod:`.me`). No HTTP here: the routes are in
:mod:`vigil.gateway.customer`."""
