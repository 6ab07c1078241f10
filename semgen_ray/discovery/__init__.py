"""Self-discovery of anatomical patterns (docs/method.md §1-§2): auto-encoder embeddings, neighbour search,
coordinates and crop boxes per pseudo-class, the pattern manifest and its montages."""
