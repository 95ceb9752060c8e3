"""pca-thrift: health statistics and log lines to WSO2 CEP / DAS over the databridge Thrift protocol."""

from pca_thrift.publisher import ThriftLogPublisher

__all__ = ["ThriftLogPublisher"]
__version__ = "1.0.0"
