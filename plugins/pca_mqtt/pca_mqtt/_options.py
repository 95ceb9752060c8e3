"""The mqtt transport's own options, and the checks of its ``[transport]`` section that types cannot make."""

from __future__ import annotations

import os
from typing import Literal

from pca_core.api import ConfigIssue, PluginOptions, TransportConfig
from pca_mqtt.urls import parse_url, parse_urls


class MqttOptions(PluginOptions):
    """Options of the ``mqtt`` transport (``[transport.options]``).

    Reconnect delays are not options of the plugin: they are ``transport.reconnect_delay`` and
    ``transport.max_reconnect_delay``, the same for every transport.

    Attributes:
        keepalive: seconds of silence after which the client pings the broker; a broker that does not
            answer within as long again is considered lost.
        persistent_session: keep the broker session across disconnects (MQTT clean session off), so QoS 1
            messages published while the agent is away are delivered when it comes back, and a message
            received but not handled is delivered again. Needs a stable ``transport.client_id``.
        session_expiry: with MQTT 5 and a persistent session, seconds the broker keeps the session after a
            disconnect (MQTT 3.1.1 brokers decide this themselves).
        protocol: ``"3.1.1"`` or ``"5"``.
    """

    keepalive: int = 60
    persistent_session: bool = False
    session_expiry: int = 86_400
    protocol: Literal["3.1.1", "5"] = "3.1.1"


def config_issues(config: TransportConfig, options: MqttOptions) -> list[ConfigIssue]:
    """Every problem of the section: broker URLs, option ranges, TLS files."""
    issues = []
    tls = config.tls is not None
    bad = []
    for i, text in enumerate(config.urls):  # each malformed address under its own key
        try:
            parse_url(text, tls=tls)
        except ValueError as exc:
            bad.append(ConfigIssue(f"urls[{i}]", str(exc)))
    issues += bad
    if not bad:  # the list as a whole: empty, or mixing TLS and plain brokers
        try:
            parse_urls(config.urls, tls=tls)
        except ValueError as exc:
            issues.append(ConfigIssue("urls", str(exc)))
    if options.persistent_session and not config.client_id:
        issues.append(ConfigIssue("options.persistent_session",
                                  "a persistent session needs a stable client_id (the agent sets "
                                  "pca-<MEMBER_ID> when the payload has one)"))
    if not 0 < options.keepalive <= 65535:
        issues.append(ConfigIssue("options.keepalive", f"1 to 65535 seconds, not {options.keepalive}"))
    if not 0 <= options.session_expiry <= 0xFFFFFFFF:
        issues.append(ConfigIssue("options.session_expiry",
                                  f"0 to 4294967295 seconds, not {options.session_expiry}"))
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(config.tls, key, None) if config.tls is not None else None
        if path is not None and not os.access(path, os.R_OK):
            issues.append(ConfigIssue(f"tls.{key}", f"a readable file; {path} cannot be read"))
    return issues
