"""The plugins pca-core ships, registered through the same entry points as any other: memory and file."""
