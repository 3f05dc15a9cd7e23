"""The feed: catalog in memory, ranker with reasons, partner rule, the HTTP service, evaluation."""
