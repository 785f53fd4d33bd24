"""Velocity state shards and the blacklist copies they and the rules read."""
