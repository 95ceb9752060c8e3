"""What proton reports when a connection fails, said so that an operator knows what to do."""

from __future__ import annotations

from pca_core.api import AuthenticationError, ConnectionFailed, PcaError

NAME = "amqp"

_AMQP_0_9_1 = "AMQP\\x00\\x00\\x09\\x01"  # the header an AMQP 0-9-1 broker answers with, as proton quotes it


def connection_error(name: str | None, description: str | None, *, user: str | None) -> PcaError:
    """The error for a failed connection attempt, from the condition proton reported (if any).

    Args:
        name: the condition's name (``amqp:unauthorized-access``), or None if proton gave none.
        description: the condition's description.
        user: the user name offered, for the message on refused credentials.
    """
    text = description or ""
    if name == "amqp:unauthorized-access":
        who = f"user {user!r}" if user else "anonymous login (no transport.username)"
        return AuthenticationError(NAME, f"credentials refused ({who}: {text}); check transport.username "
                                         f"and transport.password")
    if _AMQP_0_9_1 in text:
        return ConnectionFailed(NAME, "the broker speaks AMQP 0-9-1, not 1.0; on RabbitMQ enable the AMQP "
                                      "1.0 plugin: rabbitmq-plugins enable rabbitmq_amqp1_0")
    if "Unknown protocol" in text or "no protocol header found" in text:
        return ConnectionFailed(NAME, f"the server did not answer as an AMQP 1.0 broker ({text}); check the "
                                      f"port (AMQP is 5672, AMQPS 5671)")
    if name in ("proton:io", "proton.pythonio"):  # socket errors
        if "refused" in text.lower():
            return ConnectionFailed(NAME, "connection refused")
        return ConnectionFailed(NAME, text or "connection failed")
    lowered = text.lower()
    if "certificate verify failed" in lowered or "ssl" in lowered or "tls" in lowered:
        return ConnectionFailed(NAME, f"TLS failed ({text}); if the broker's certificate is signed by a "
                                      f"private CA, set transport.tls.ca_file to it")
    if name:
        return ConnectionFailed(NAME, f"{name}: {text}" if text else name)
    return ConnectionFailed(NAME, "connection closed by the broker or the network")
