"""Training: the retrieval template, losses, the strategy base and its registry."""

# Batches between reads of device values during training (the loss for progress and
# logging, the finiteness check): each read waits for the device.
READ_EVERY = 25
