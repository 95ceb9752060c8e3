"""The pca error tree.

Every error pca raises on purpose derives from :class:`PcaError`. Errors about a plugin carry the plugin's
name (and, where known, its group and distribution) so that a message can say which one failed.
"""

from __future__ import annotations


class PcaError(Exception):
    """Base of every error pca raises on purpose; its message is meant for a person."""


class ConfigError(PcaError):
    """A configuration value is missing or malformed.

    Attributes:
        source: the file (or ``environment variable NAME``) the value came from.
        key: the key, in the form the source spells it.
        expected: what a valid value looks like.
    """

    def __init__(self, source: str, key: str, expected: str) -> None:
        self.source = source
        self.key = key
        self.expected = expected
        super().__init__(f"{source}: {key}: {expected}")


class ConfigErrors(ConfigError):
    """Every problem found in one configuration, so that one run reports them all.

    Its ``source``, ``key`` and ``expected`` are the first problem's.

    Attributes:
        errors: the problems, each naming its file (or variable), key and what was expected.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        if not errors:
            raise ValueError("ConfigErrors needs at least one error")
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.source, first.key, first.expected)
        if len(self.errors) > 1:
            lines = "\n  ".join(str(error) for error in self.errors)
            self.args = (f"{len(self.errors)} problems in the configuration:\n  {lines}",)


class PluginError(PcaError):
    """A plugin could not be found, loaded or used.

    Attributes:
        plugin: the plugin's name, as selected in the configuration.
        group: the entry point group, e.g. ``pca.transports`` (empty when not known).
    """

    def __init__(self, plugin: str, message: str, *, group: str = "") -> None:
        self.plugin = plugin
        self.group = group
        super().__init__(message)


class PluginNotFound(PluginError):
    """No installed distribution registers the selected name in the group."""


class PluginLoadError(PluginError):
    """The plugin is installed but importing or checking it failed."""


class PluginAPIMismatch(PluginError):
    """The plugin was written for a plugin API version this pca-core does not provide."""


class TransportError(PluginError):
    """A transport operation failed."""


class ConnectionFailed(TransportError):
    """The broker could not be reached; retrying may help."""


class AuthenticationError(TransportError):
    """The broker refused the credentials; retrying at once will not help."""


class PublishTimeout(TransportError):
    """The broker did not confirm a publish within the timeout."""


class ArtifactSyncError(PluginError):
    """An artifact repository operation failed; the working directory was left as it was."""


class LogPublishError(PluginError):
    """A log publisher could not deliver a batch; the core keeps it and retries."""
