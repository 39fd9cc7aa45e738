"""Training: the retrieval template, losses, the strategy base and its registry."""
