"""The ``fluentd`` log publisher: records to a Fluentd or Fluent Bit ``forward`` input, acknowledged."""

from __future__ import annotations

import itertools
import logging
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pca_core.api import (
    Capability,
    ConfigError,
    ConfigIssue,
    LogPublisher,
    LogPublishError,
    LogRecord,
    PublisherConfig,
    StreamDefinition,
)
from pca_fluentd._connection import Connection, Dialer, ForwardError
from pca_fluentd._options import FluentdOptions, config_issues, servers
from pca_fluentd._tags import render
from pca_fluentd._wire import Chunk, Credentials, pack_chunk

_log = logging.getLogger("pca_fluentd")

NAME = "fluentd"


class FluentdLogPublisher(LogPublisher):
    """Sends each batch to one server of ``options.servers`` over the Forward protocol v1.

    The records of a batch go out as one PackedForward chunk per run of records with the same tag, all
    chunks first and then their acknowledgements read, within the publish timeout. A record counts as
    accepted once the chunk that carries it, and every chunk before it, was acknowledged (with
    ``require_ack = false``: once written to the socket). The server that took the last batch is used
    until it fails; a batch that finds it down, or loses it midway, is offered to each other server once,
    while the timeout lasts. Any error drops the connection, so a late acknowledgement is never counted.

    The publisher buffers nothing and retries nothing beyond that: the core's record sink keeps what was
    not accepted and offers it again. It has no thread; one connection is open at a time.

    Raises:
        ConfigError: the TLS files cannot be used (``ca_file``, ``cert_file``, ``key_file``).
    """

    api_version = (2, 0)
    capabilities = frozenset({Capability.ACK, Capability.TLS})
    Options = FluentdOptions

    def __init__(self, config: PublisherConfig, options: FluentdOptions) -> None:
        super().__init__(config, options)
        self._servers = servers(options)
        self._dialer = Dialer(_tls_context(options), _credentials(options), options.timeout)
        self._current = 0  # the index of the server in use
        self._connection: Connection | None = None
        self._tags: dict[str, str] = {}
        self._lock = threading.Lock()  # guards _connection and _closed between publish() and close()
        self._closed = False
        if not options.require_ack:
            _log.warning("fluentd: options.require_ack is false: a batch counts as delivered once written to "
                         "the socket, so what a server loses before storing it is lost (at most once)")

    @classmethod
    def check_config(cls, config: PublisherConfig, options: FluentdOptions) -> Iterable[ConfigIssue]:
        """Checks the server addresses, ``compress``, the tag templates and the TLS and login settings."""
        return list(config_issues(config, options))

    def open(self, streams: Sequence[StreamDefinition], *, timeout: float | None = None) -> None:
        """Keeps the definitions and works out each stream's tag; nothing is sent.

        Raises:
            LogPublishError: a tag template names a property the stream does not have.
        """
        super().open(streams, timeout=timeout)
        self._tags = {stream.name: self._tag(stream.name, stream.properties) for stream in streams}

    def publish(self, batch: Sequence[LogRecord], *, timeout: float | None = None) -> int:
        """Sends ``batch``; returns how many of its first records a server acknowledged.

        Raises:
            LogPublishError: no record was acknowledged (every server's reason is in the message), or the
                publisher is closed.
        """
        if self._closed:
            raise LogPublishError(NAME, "fluentd: publish after close")
        if not batch:
            return 0
        deadline = time.monotonic() + (self.config.publish_timeout if timeout is None else timeout)
        chunks = self._chunks(batch)
        done, failures = self._deliver(chunks, deadline)
        accepted = sum(chunk.records for chunk in chunks[:done])
        if accepted == 0:
            raise LogPublishError(NAME, "; ".join(failures) or "fluentd: no server took the records")
        if failures:
            _log.debug("fluentd: %d of %d records delivered: %s", accepted, len(batch), "; ".join(failures))
        return accepted

    def check(self, *, timeout: float | None = None) -> str | None:
        """Opens a connection to every server of ``options.servers`` (TLS and handshake too), sends nothing.

        Each server gets ``timeout`` seconds (default ``publish_timeout``), bounded by ``options.timeout``.

        Raises:
            LogPublishError: a server does not answer, is not trusted, or refused the handshake; the
                message names each one that failed.
        """
        seconds = self.config.publish_timeout if timeout is None else timeout
        reached, failures = [], []
        for server in self._servers:
            try:
                self._dialer.open(server, time.monotonic() + seconds).close()
            except ForwardError as exc:
                failures.append(str(exc))
                continue
            reached.append(str(server))
        if failures:
            raise LogPublishError(NAME, "; ".join(failures))
        return f"{', '.join(reached)} accepted the connection"

    def close(self, timeout: float | None = None) -> None:
        """Drops the connection (nothing is buffered, so nothing is left to send); idempotent."""
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    # -- delivery -------------------------------------------------------------------------------------

    def _tag(self, stream: str, properties: Mapping[str, str]) -> str:
        key = f"options.tags.{stream}" if stream in self.options.tags else "options.tag"
        template = self.options.tags.get(stream, self.options.tag)
        values = {**properties, "stream": stream}
        try:
            tag = render(template, values)
        except KeyError as exc:
            raise LogPublishError(NAME, f"fluentd: {key} {template!r} names {exc.args[0]!r}, which stream "
                                        f"{stream!r} does not have; it has: {', '.join(sorted(values))}"
                                  ) from None
        if not tag:
            raise LogPublishError(NAME, f"fluentd: {key} {template!r} makes an empty tag for stream "
                                        f"{stream!r}")
        return tag

    def _tag_of(self, record: LogRecord) -> str:
        tag = self._tags.get(record.stream)
        if tag is None:  # a stream open() was not told about: only {stream} is known
            tag = self._tags[record.stream] = self._tag(record.stream, {})
        return tag

    def _chunks(self, batch: Sequence[LogRecord]) -> list[Chunk]:
        """One chunk per run of records with the same tag, in the order of the batch."""
        options = self.options
        return [pack_chunk(tag, list(records), ack=options.require_ack, compress=options.compress == "gzip",
                           time_as_integer=options.time_as_integer)
                for tag, records in itertools.groupby(batch, self._tag_of)]

    def _deliver(self, chunks: list[Chunk], deadline: float) -> tuple[int, list[str]]:
        """Sends ``chunks`` to the server in use, then to each other one once while time is left.

        Returns:
            How many leading chunks were accepted, and why each server that failed did.
        """
        done = 0
        failures: list[str] = []
        count = len(self._servers)
        for step in range(count):
            if step and (time.monotonic() >= deadline or self._closed):
                break
            index = (self._current + step) % count
            try:
                while done < len(chunks):
                    connection = self._connection_to(index, deadline)
                    sending = chunks[done:] if connection.keepalive else chunks[done:done + 1]
                    done += self._send(connection, sending, deadline)
                    if not connection.keepalive:  # the server closes it after one message
                        self._drop()
            except ForwardError as exc:
                done += exc.acked
                self._drop()
                failures.append(str(exc))
                continue
            if index != self._current:
                _log.info("fluentd: now sending to %s (%s)", self._servers[index], "; ".join(failures))
                self._current = index
            break
        return done, failures

    def _send(self, connection: Connection, chunks: Sequence[Chunk], deadline: float) -> int:
        """Writes every chunk, then reads their acknowledgements; returns how many leading ones count."""
        for sent, chunk in enumerate(chunks):
            try:
                connection.send(chunk.data, deadline)
            except ForwardError as exc:
                raise ForwardError(str(exc), 0 if self.options.require_ack else sent) from None
        if not self.options.require_ack:
            return len(chunks)
        return connection.acknowledged(chunks, deadline)

    def _connection_to(self, index: int, deadline: float) -> Connection:
        """The open connection to server ``index``, or a new one."""
        server = self._servers[index]
        connection = self._connection
        if connection is not None:
            if connection.server == server and not connection.stale():
                return connection
            self._drop()
        connection = self._dialer.open(server, deadline)
        with self._lock:
            if self._closed:
                connection.close()
                raise ForwardError("fluentd: the publisher was closed")
            self._connection = connection
        return connection

    def _drop(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _credentials(options: FluentdOptions) -> Credentials | None:
    if options.shared_key is None:
        return None
    return Credentials(options.shared_key.reveal(), options.self_hostname, options.username,
                       None if options.password is None else options.password.reveal())


def _no_password() -> Any:
    """Refuses an encrypted private key instead of letting OpenSSL prompt on the terminal."""
    raise ValueError("the private key is encrypted")


def _tls_context(options: FluentdOptions) -> ssl.SSLContext | None:
    if not options.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=options.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("fluentd log publisher", "options.ca_file", f"a readable CA file ({exc})") from None
    if options.cert_file is not None:
        try:
            context.load_cert_chain(options.cert_file, options.key_file, password=_no_password)
        except (OSError, ssl.SSLError, ValueError) as exc:
            key = "options.key_file" if options.key_file is not None else "options.cert_file"
            raise ConfigError("fluentd log publisher", key, f"a readable client certificate and its "
                                                            f"unencrypted private key ({exc})") from None
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _log.warning("fluentd: options.verify is false: server certificates and host names are NOT checked")
    return context
