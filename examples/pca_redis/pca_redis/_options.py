"""The redis transport's own options, and the checks of its ``[transport]`` section that types cannot make."""

from __future__ import annotations

from pca_core import ConfigIssue, PluginOptions, TransportConfig
from pca_redis._servers import parse_server


class RedisOptions(PluginOptions):
    """Options of the ``redis`` transport (the ``[transport.options]`` table).

    The reconnect delays are not options of the plugin: they are ``transport.reconnect_delay`` and
    ``transport.max_reconnect_delay``, the same for every transport.

    Attributes:
        keepalive: seconds of silence on the pub/sub connection after which the listener pings the server;
            when no answer comes within as many seconds again, the connection counts as lost.
    """

    keepalive: float = 30.0


def config_issues(config: TransportConfig, options: RedisOptions) -> list[ConfigIssue]:
    """Every problem of the section: the URLs, the reconnect delays, the keepalive."""
    issues = []
    for i, url in enumerate(config.urls):
        try:
            parse_server(url, username=config.username, password=config.password, tls=config.tls is not None)
        except ValueError as exc:
            issues.append(ConfigIssue(f"urls[{i}]", str(exc)))
    if not options.keepalive > 0:
        issues.append(ConfigIssue("options.keepalive", "a number of seconds greater than 0"))
    return issues
