"""pca-amqp: the AMQP 1.0 transport of pca, on python-qpid-proton."""

from pca_amqp._options import AmqpOptions
from pca_amqp.addresses import Addressing
from pca_amqp.transport import AmqpTransport
from pca_amqp.urls import BrokerUrl, parse_url

__version__ = "1.0.0"

__all__ = ["Addressing", "AmqpOptions", "AmqpTransport", "BrokerUrl", "__version__", "parse_url"]
