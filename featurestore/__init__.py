"""Feature store: Feast definitions, preference computation and online reads (see featurestore/online.py)."""
