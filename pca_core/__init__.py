"""pca-core: the cloud-instance agent's core and the contracts its plugins implement."""

from pca_core._version import __version__
from pca_core.artifact_repo import ArtifactRepo, RepoSpec, SyncResult
from pca_core.config import TlsConfig, TransportConfig
from pca_core.errors import (
    ArtifactSyncError,
    AuthenticationError,
    ConfigError,
    ConnectionFailed,
    LogPublishError,
    PcaError,
    PluginAPIMismatch,
    PluginError,
    PluginLoadError,
    PluginNotFound,
    PublishTimeout,
    TransportError,
)
from pca_core.event_handler import EventHandler, HandlerContext
from pca_core.log_publisher import LogPublisher, LogRecord
from pca_core.plugin import PLUGIN_API_VERSION, Plugin, PluginOptions
from pca_core.secret import Secret
from pca_core.topics import topic_matches, validate_pattern, validate_topic
from pca_core.transport import ConnectionState, Handler, Message, QoS, Subscription, Transport

__all__ = [
    "PLUGIN_API_VERSION",
    "ArtifactRepo",
    "ArtifactSyncError",
    "AuthenticationError",
    "ConfigError",
    "ConnectionFailed",
    "ConnectionState",
    "EventHandler",
    "Handler",
    "HandlerContext",
    "LogPublishError",
    "LogPublisher",
    "LogRecord",
    "Message",
    "PcaError",
    "Plugin",
    "PluginAPIMismatch",
    "PluginError",
    "PluginLoadError",
    "PluginNotFound",
    "PluginOptions",
    "PublishTimeout",
    "QoS",
    "RepoSpec",
    "Secret",
    "Subscription",
    "SyncResult",
    "TlsConfig",
    "Transport",
    "TransportConfig",
    "TransportError",
    "__version__",
    "topic_matches",
    "validate_pattern",
    "validate_topic",
]
