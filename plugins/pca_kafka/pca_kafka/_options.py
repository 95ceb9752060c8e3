"""The kafka transport's own options, and the checks of its ``[transport]`` section that types cannot make."""

from __future__ import annotations

import os
from typing import Literal

from pca_core.api import ConfigIssue, PluginOptions, TransportConfig
from pca_kafka.urls import parse_urls


class KafkaOptions(PluginOptions):
    """Options of the ``kafka`` transport (``[transport.options]``).

    Attributes:
        separator: what ``/`` becomes in Kafka topic names.
        prefix: put before every Kafka topic name.
        group_id: the group the consumer commits its offsets for; by default ``transport.client_id``
            (``pca-<member id>``), so that every agent has offsets of its own. The consumer assigns
            itself every partition it needs and never joins the group, so every agent sees every message.
        metadata_max_age: seconds between two reads of the topic list, which is how a subscription
            notices a new topic that its pattern matches.
        max_request_size: the largest message the producer sends, in bytes (the broker has its own limit,
            ``message.max.bytes``).
        max_in_flight: messages received and not yet acknowledged at most; beyond it fetching pauses.
        sasl_mechanism: with ``transport.username``: ``PLAIN`` (the only one offered).
    """

    separator: Literal[".", "_", "-"] = "."
    prefix: str = ""
    group_id: str | None = None
    metadata_max_age: float = 10.0
    max_request_size: int = 1_048_576
    max_in_flight: int = 1_000
    sasl_mechanism: Literal["PLAIN"] = "PLAIN"


def config_issues(config: TransportConfig, options: KafkaOptions) -> list[ConfigIssue]:
    """Every problem of the section: bootstrap servers, option ranges, TLS files, credentials."""
    issues = []
    try:
        parse_urls(config.urls, tls=config.tls is not None)
    except ValueError as exc:
        issues.append(ConfigIssue("urls", str(exc)))
    if options.prefix and not all(c.isalnum() or c in "._-" for c in options.prefix):
        issues.append(ConfigIssue("options.prefix",
                                  f"letters, digits, '.', '_' or '-', not {options.prefix!r}"))
    checks = [("metadata_max_age", options.metadata_max_age > 0, "seconds, more than 0"),
              ("max_request_size", options.max_request_size >= 1, "bytes, at least 1"),
              ("max_in_flight", options.max_in_flight >= 1, "messages, at least 1")]
    for key, good, expected in checks:
        if not good:
            issues.append(ConfigIssue(f"options.{key}", f"{expected}, not {getattr(options, key)}"))
    if config.password is not None and not config.username:
        issues.append(ConfigIssue("username", "a user name for the password (SASL PLAIN)"))
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(config.tls, key, None) if config.tls is not None else None
        if path is not None and not os.access(path, os.R_OK):
            issues.append(ConfigIssue(f"tls.{key}", f"a readable file; {path} cannot be read"))
    return issues
