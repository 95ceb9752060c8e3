"""pca-redis-example: a third-party pca transport plugin on Redis pub/sub."""

from pca_redis.transport import RedisOptions, RedisTransport

__all__ = ["RedisOptions", "RedisTransport"]
