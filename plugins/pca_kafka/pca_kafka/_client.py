"""The settings kafka-python's producer and consumer share: servers, security, reconnects."""

from __future__ import annotations

import ssl
from typing import Any

from pca_core.api import ConfigError, Secret, TransportConfig
from pca_kafka._options import KafkaOptions
from pca_kafka.urls import Server


def common(config: TransportConfig, options: KafkaOptions, servers: tuple[Server, ...],
           client_id: str) -> dict[str, Any]:
    """The keyword arguments both clients take.

    Reconnects follow the core's schedule: kafka-python backs off exponentially with jitter from
    ``transport.reconnect_delay`` up to ``transport.max_reconnect_delay``, per broker, by itself.

    Raises:
        ConfigError: the TLS files cannot be used.
    """
    tls = servers[0].tls
    kwargs: dict[str, Any] = {
        "bootstrap_servers": [server.address for server in servers],
        "client_id": client_id,
        "reconnect_backoff_ms": int(config.reconnect_delay * 1000),
        "reconnect_backoff_max_ms": int(config.max_reconnect_delay * 1000),
        "request_timeout_ms": int(max(config.publish_timeout, config.connect_timeout) * 1000) + 1000,
        "metadata_max_age_ms": int(options.metadata_max_age * 1000),
        "metrics_enabled": False,  # no metrics thread
    }
    if config.username:
        kwargs.update(security_protocol="SASL_SSL" if tls else "SASL_PLAINTEXT",
                      sasl_mechanism=options.sasl_mechanism, sasl_plain_username=config.username,
                      sasl_plain_password=_reveal(config.password))
    elif tls:
        kwargs["security_protocol"] = "SSL"
    if tls:
        kwargs["ssl_context"] = _ssl_context(config)
        kwargs["ssl_check_hostname"] = config.tls is None or config.tls.verify
    return kwargs


def _reveal(password: Secret | str | None) -> str:
    if password is None:
        return ""
    return password.reveal() if isinstance(password, Secret) else str(password)


def _ssl_context(config: TransportConfig) -> ssl.SSLContext:
    tls = config.tls
    try:
        context = ssl.create_default_context(cafile=tls.ca_file if tls is not None else None)
        if tls is not None and tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ValueError) as exc:
        raise ConfigError("kafka transport", "transport.tls", f"usable TLS files: {exc}") from None
    if tls is not None and not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
