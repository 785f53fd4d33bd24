"""Adapters to the outside world that the pure core does not import (Ray start-up)."""
