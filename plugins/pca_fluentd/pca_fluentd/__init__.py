"""pca-fluentd: health statistics and log lines to Fluentd or Fluent Bit over the Forward protocol v1."""

from pca_fluentd._options import FluentdOptions
from pca_fluentd.publisher import FluentdLogPublisher

__version__ = "1.0.0"

__all__ = ["FluentdLogPublisher", "FluentdOptions", "__version__"]
