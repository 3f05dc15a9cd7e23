"""Feature store: preference computation, Feast definitions and layout, materialization and online profile reads."""
