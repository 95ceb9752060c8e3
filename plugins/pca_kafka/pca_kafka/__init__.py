"""pca-kafka: the Kafka transport of pca, on kafka-python."""

from pca_kafka._options import KafkaOptions
from pca_kafka.names import Naming
from pca_kafka.transport import KafkaTransport
from pca_kafka.urls import Server, parse_url

__version__ = "1.0.0"

__all__ = ["KafkaOptions", "KafkaTransport", "Naming", "Server", "__version__", "parse_url"]
