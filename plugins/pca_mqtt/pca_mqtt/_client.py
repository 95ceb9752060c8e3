"""The paho client: how it is made, how one connection attempt starts, and how a connection is dropped."""

from __future__ import annotations

import logging
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pca_core.api import ConfigError, TransportConfig
from pca_mqtt._options import MqttOptions
from pca_mqtt.urls import BrokerUrl

_log = logging.getLogger("pca_mqtt")

AUTH_REFUSALS = frozenset({"Bad user name or password", "Not authorized", "Bad authentication method"})
"""CONNACK reasons that mean the credentials were refused, in paho's words."""


def make_client(config: TransportConfig, options: MqttOptions, client_id: str, tls: bool) -> mqtt.Client:
    """A paho client for the transport's settings, with no callbacks yet.

    With a persistent session it acknowledges by hand (``manual_ack``), once the handlers are done.

    Raises:
        ConfigError: the TLS files cannot be used.
    """
    v5 = options.protocol == "5"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=None if v5 else not options.persistent_session,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                         manual_ack=options.persistent_session)
    client.enable_logger(logging.getLogger("pca_mqtt.paho"))
    client.suppress_exceptions = True  # a failing callback is logged; it never kills the network loop
    if tls:
        client.tls_set_context(_tls_context(config))
    return client


PACKET_HEADROOM = 65_536 + 1024
"""Bytes of a PUBLISH besides its body, at most: a topic (65,535), fixed header, packet id, properties."""
MQTT_MAX_PACKET = 268_435_460
"""The largest MQTT packet (a Remaining Length of 268,435,455 and a 5-byte fixed header)."""


def start_connect(client: mqtt.Client, url: BrokerUrl, config: TransportConfig, options: MqttOptions,
                  timeout: float) -> None:
    """Opens the socket to ``url`` and queues CONNECT, with the URL's credentials or the configured ones.

    Raises:
        OSError: the TCP or TLS connection failed.
        ValueError: paho refused the address.
    """
    drop_connection(client, url, options)
    client.connect_timeout = max(timeout, 0.001)
    username = url.username if url.username is not None else config.username
    password = url.password if url.username is not None else config.password
    client.username_pw_set(username, password.reveal() if password is not None and username else None)
    if options.protocol == "5":
        properties = Properties(PacketTypes.CONNECT)
        # The broker sends no bigger packet (it drops the message for this client): the client never
        # buffers it. The headroom lets a body of the maximum size through with its topic and header.
        properties.MaximumPacketSize = min(config.max_message_size + PACKET_HEADROOM, MQTT_MAX_PACKET)
        if options.persistent_session:
            properties.SessionExpiryInterval = options.session_expiry
        client.connect(url.host, url.port, options.keepalive, clean_start=not options.persistent_session,
                       properties=properties)
    else:
        client.connect(url.host, url.port, options.keepalive)


def drop_connection(client: mqtt.Client, url: BrokerUrl, options: MqttOptions) -> None:
    """Closes the client's socket, if any, and leaves paho in its disconnected state.

    ``connect_async`` is paho's public way to drop a connection; the ``disconnect`` that follows finds no
    socket and only marks the client disconnected, which is the state where its connection settings
    (``connect_timeout``) may change.
    """
    client.connect_async(url.host, url.port, options.keepalive)
    client.disconnect()


def describe(exc: BaseException) -> str:
    """A short reason for a failed connection attempt."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _tls_context(config: TransportConfig) -> ssl.SSLContext:
    tls = config.tls
    try:
        context = ssl.create_default_context(cafile=tls.ca_file if tls else None)
        if tls is not None and tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ValueError) as exc:
        raise ConfigError("mqtt transport", "transport.tls", f"unusable TLS files: {exc}") from None
    if tls is not None and not tls.verify:
        _log.warning("mqtt: transport.tls.verify is false: broker certificates and host names are NOT "
                     "checked; anyone on the path can read and forge the agent's messages")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
