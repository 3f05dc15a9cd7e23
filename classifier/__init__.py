"""Topic classifier: SFT causal LM with taxonomy-constrained beam search (not built yet: see the issues)."""
