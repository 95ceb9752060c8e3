"""pca's plugin API: everything a plugin may import (``pca_core`` re-exports it).

The contracts (:class:`Transport`, :class:`ArtifactRepo`, :class:`LogPublisher`, :class:`EventHandler`),
the settings each plugin receives, the errors, secrets and masking, canonical topics and the retry
backoff. Plugins import from here, from :mod:`pca_core`, and from :mod:`pca_core.testing`, nothing else.
"""

from pca_core.api.artifact_repo import ArtifactRepo, RepoSpec, SyncResult
from pca_core.api.backoff import Backoff
from pca_core.api.errors import (
    ArtifactSyncError,
    AuthenticationError,
    ConfigError,
    ConfigErrors,
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
from pca_core.api.log_publisher import Attribute, AttributeType, LogPublisher, LogRecord, StreamDefinition
from pca_core.api.plugin import PLUGIN_API_VERSION, Capability, ConfigIssue, Plugin, PluginOptions
from pca_core.api.secrets import (
    MASK,
    Secret,
    mask_credentials,
    mask_data,
    split_credentials,
    without_password,
)
from pca_core.api.settings import ArtifactsConfig, PluginChoice, PublisherConfig, TlsConfig, TransportConfig
from pca_core.api.topics import topic_matches, validate_pattern, validate_topic
from pca_core.api.transport import (
    ConnectionState,
    Handler,
    Message,
    QoS,
    StateListener,
    Subscription,
    Transport,
    settle_once_all_acked,
)

__all__ = [
    "MASK",
    "PLUGIN_API_VERSION",
    "ArtifactRepo",
    "ArtifactSyncError",
    "ArtifactsConfig",
    "Attribute",
    "AttributeType",
    "AuthenticationError",
    "Backoff",
    "Capability",
    "ConfigError",
    "ConfigErrors",
    "ConfigIssue",
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
    "PluginChoice",
    "PluginError",
    "PluginLoadError",
    "PluginNotFound",
    "PluginOptions",
    "PublishTimeout",
    "PublisherConfig",
    "QoS",
    "RepoSpec",
    "Secret",
    "StateListener",
    "StreamDefinition",
    "Subscription",
    "SyncResult",
    "TlsConfig",
    "Transport",
    "TransportConfig",
    "TransportError",
    "mask_credentials",
    "mask_data",
    "settle_once_all_acked",
    "split_credentials",
    "topic_matches",
    "validate_pattern",
    "validate_topic",
    "without_password",
]
