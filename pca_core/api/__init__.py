"""pca's plugin API: everything a plugin may import."""
