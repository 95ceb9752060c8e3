"""pca-core: the cloud-instance agent's core and the contracts its plugins implement."""

from pca_core._version import __version__
from pca_core.api.artifact_repo import ArtifactRepo, RepoSpec, SyncResult
from pca_core.api.errors import (
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
from pca_core.api.event_handler import EventHandler, HandlerContext
from pca_core.api.log_publisher import LogPublisher, LogRecord
from pca_core.api.plugin import PLUGIN_API_VERSION, Plugin, PluginOptions
from pca_core.api.secrets import Secret
from pca_core.api.topics import topic_matches, validate_pattern, validate_topic
from pca_core.api.transport import ConnectionState, Handler, Message, QoS, Subscription, Transport
from pca_core.config import TlsConfig, TransportConfig

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
