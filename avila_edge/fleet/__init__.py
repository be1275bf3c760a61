"""The fleet receiver: the cloud side that takes gateway batches, dedupes them, stores and acknowledges."""
