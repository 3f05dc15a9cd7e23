"""Feed ranker service (not built yet: see the issues)."""
