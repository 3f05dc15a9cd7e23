"""Topic classifier: an SFT causal LM that writes taxonomy paths, decoded by candidate beam search over a token trie (see docs/classifier.md)."""
