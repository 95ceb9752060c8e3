"""The amqp transport's own options, and the checks of its ``[transport]`` section that types cannot make."""

from __future__ import annotations

import os

from pca_amqp.urls import parse_url, parse_urls
from pca_core.api import ConfigIssue, PluginOptions, TransportConfig


class AmqpOptions(PluginOptions):
    """Options of the ``amqp`` transport (``[transport.options]``).

    Reconnect delays are not options of the plugin: they are ``transport.reconnect_delay`` and
    ``transport.max_reconnect_delay``, the same for every transport.

    Attributes:
        address_prefix: what goes before a topic's routing key to make its AMQP address: ``/topic/`` is
            RabbitMQ's ``amq.topic`` exchange, ``/exchange/<name>/`` another topic exchange.
        prefetch: messages a subscription may hold unsettled (received, not yet handled) at once; the
            broker sends more as the agent settles them.
        heartbeat: seconds of silence after which the connection counts as dead (AMQP idle timeout; the
            broker is asked to send something at least twice as often).
        max_senders: sender links (one per topic published to) kept open at once; the least recently
            used is closed beyond it.
    """

    address_prefix: str = "/topic/"
    prefetch: int = 256
    heartbeat: float = 60.0
    max_senders: int = 32


def config_issues(config: TransportConfig, options: AmqpOptions) -> list[ConfigIssue]:
    """Every problem of the section: broker URLs, option ranges, TLS files."""
    issues = []
    tls = config.tls is not None
    for i, text in enumerate(config.urls):
        try:
            parse_url(text, tls=tls)
        except ValueError as exc:
            issues.append(ConfigIssue(f"urls[{i}]", str(exc)))
    if not config.urls:
        try:
            parse_urls(config.urls)
        except ValueError as exc:
            issues.append(ConfigIssue("urls", str(exc)))
    elif not issues and tls and not any(parse_url(text, tls=True).tls for text in config.urls):
        issues.append(ConfigIssue("tls", "[transport.tls] is set, but every broker is a plain amqp:// URL; "
                                         "use amqps:// (or host:port) or remove [transport.tls]"))
    if not options.address_prefix or any(c.isspace() for c in options.address_prefix):
        issues.append(ConfigIssue("options.address_prefix",
                                  f"an address prefix without spaces such as \"/topic/\" or "
                                  f"\"/exchange/<name>/\", not {options.address_prefix!r}"))
    if not 1 <= options.prefetch <= 65_535:
        issues.append(ConfigIssue("options.prefetch", f"1 to 65535 messages, not {options.prefetch}"))
    if not options.heartbeat > 0:
        issues.append(ConfigIssue("options.heartbeat", f"seconds, more than 0, not {options.heartbeat}"))
    if not 1 <= options.max_senders <= 1024:
        issues.append(ConfigIssue("options.max_senders", f"1 to 1024 links, not {options.max_senders}"))
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(config.tls, key, None) if config.tls is not None else None
        if path is not None and not os.access(path, os.R_OK):
            issues.append(ConfigIssue(f"tls.{key}", f"a readable file; {path} cannot be read"))
    return issues
