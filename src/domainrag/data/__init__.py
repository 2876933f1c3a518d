"""Document loaders, chunking and training-dataset formats."""
