"""pca-redis-example: a third-party pca transport plugin on Redis pub/sub."""

from pca_redis._options import RedisOptions
from pca_redis.transport import RedisTransport

__all__ = ["RedisOptions", "RedisTransport"]
