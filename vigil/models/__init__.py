"""Scoring models shared by training (which fits them) and serving (which loads them)."""
