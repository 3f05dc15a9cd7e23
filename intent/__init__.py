"""Query-intent refiner: query + clicked documents -> a specific query (not built yet: see the issues)."""
