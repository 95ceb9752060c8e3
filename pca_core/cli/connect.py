"""``pca config check --connect``: builds every selected plugin and tries what it talks to.

Like ``filebeat test output``: one line per target, ``ok`` or ``failed: <reason>``. The transport connects
to each broker of ``transport.urls`` in turn (with a client id of its own, so that a running agent keeps
its connection) and closes again; the artifact repository reads the refs of the payload's ``REPO_URL``;
each log publisher connects to its receivers and sends nothing; each event handler is built. Each try is
bounded by the section's own timeouts. No line holds a secret.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from pca_core.api.artifact_repo import ArtifactRepo, RepoSpec
from pca_core.api.errors import PcaError
from pca_core.api.log_publisher import LogPublisher
from pca_core.api.secrets import (
    MASK,
    Secret,
    is_secret_key,
    mask_credentials,
    split_credentials,
    without_password,
)
from pca_core.api.transport import Transport
from pca_core.config.schema import Config
from pca_core.runtime import discovery
from pca_core.runtime.plugins import Selected

_log = logging.getLogger("pca.cli")

OK, FAILED, NOT_CHECKED = "ok", "failed", "not checked"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of trying one target.

    Attributes:
        key: where the plugin is chosen: ``transport``, ``artifacts``, ``publishers[0]``.
        plugin: the plugin's name.
        target: what was tried (a broker URL, a repository), without credentials; empty for the plugin.
        status: :data:`OK`, :data:`FAILED` or :data:`NOT_CHECKED`.
        detail: what was found, or why it failed.
    """

    key: str
    plugin: str
    target: str
    status: str
    detail: str = ""

    def line(self) -> str:
        """The outcome as ``pca config check --connect`` prints it."""
        where = f"{self.key} ({self.plugin})" + (f" {self.target}" if self.target else "")
        return f"{where}: {self.status}" + (f": {self.detail}" if self.detail else "")


def try_all(config: Config, chosen: Sequence[Selected]) -> Iterator[Outcome]:
    """Builds each plugin of ``chosen`` and tries it; yields an outcome per target, as each ends."""
    secrets = _secrets(config, chosen)
    for selected in chosen:
        name = selected.config.plugin
        tries = {discovery.TRANSPORTS: _transport, discovery.ARTIFACT_REPOS: _artifacts,
                 discovery.LOG_PUBLISHERS: _publisher}.get(selected.group, _handler)
        for target, attempt in tries(config, selected):
            try:
                status, detail = attempt()
            except Exception as exc:  # whatever a plugin raises is the reason it failed: no traceback
                status, detail = FAILED, _reason(exc)
            yield Outcome(selected.key, name, mask_credentials(target), status, _scrub(detail, secrets))


def connect_command(config: Config, chosen: Sequence[Selected], source: str) -> int:
    """Prints an outcome line per target as each try ends; returns 1 when one failed, else 0."""
    failed = 0
    for outcome in try_all(config, chosen):
        print(outcome.line(), flush=True)
        failed += outcome.status == FAILED
    if failed:
        print(f"pca: error: {source}: {failed} of the targets failed", file=sys.stderr)
        return 1
    _log.info("%s: configuration is valid and every target answered", source)
    return 0


Attempt = Callable[[], tuple[str, str]]


def _transport(config: Config, selected: Selected) -> Iterator[tuple[str, Attempt]]:
    """One attempt per broker URL (one without a target when the plugin needs none)."""
    section = selected.config
    timeout = section.connect_timeout
    for url in section.urls or (None,):
        # A client id of its own: a broker drops the older of two connections with the same id, which
        # would be the running agent's.
        single = msgspec.structs.replace(section, urls=(url,) if url else (), client_id=None)

        def attempt(single: Any = single) -> tuple[str, str]:
            transport: Transport = selected.cls(single, selected.options)  # type: ignore[assignment]
            try:
                transport.connect(timeout=timeout)
            finally:
                transport.close(timeout)
            return OK, ""

        yield url or "", attempt


def _artifacts(config: Config, selected: Selected) -> Iterator[tuple[str, Attempt]]:
    """One attempt: the payload's ``REPO_URL``, read as ``git ls-remote`` would."""
    url, user, password = split_credentials(config.payload["REPO_URL"])
    spec = RepoSpec(url=url, path=config.agent.application_path or "", branch=config.artifacts.branch,
                    username=user, password=Secret(password) if password is not None else None,
                    tenant_id=config.payload.get("TENANT_ID"))

    def attempt() -> tuple[str, str]:
        repo: ArtifactRepo = selected.cls(selected.config, selected.options)  # type: ignore[assignment]
        try:
            found = repo.check_remote(spec)
        finally:
            repo.close()
        if found is None:
            return NOT_CHECKED, f"the {selected.config.plugin} plugin offers no remote check"
        return OK, found

    yield without_password(config.payload["REPO_URL"]), attempt


def _publisher(config: Config, selected: Selected) -> Iterator[tuple[str, Attempt]]:
    """One attempt: the publisher's own check of its receivers."""
    timeout = selected.config.publish_timeout

    def attempt() -> tuple[str, str]:
        publisher: LogPublisher = selected.cls(selected.config, selected.options)  # type: ignore[assignment]
        try:
            found = publisher.check(timeout=timeout)
        finally:
            publisher.close(timeout)
        if found is None:
            return NOT_CHECKED, f"the {selected.config.plugin} plugin offers no receiver check"
        return OK, found

    yield "", attempt


def _handler(config: Config, selected: Selected) -> Iterator[tuple[str, Attempt]]:
    """One attempt: an event handler talks to nothing; building it is the check."""

    def attempt() -> tuple[str, str]:
        selected.cls(selected.config, selected.options).close()  # type: ignore[call-arg]
        return OK, "built"

    yield "", attempt


def _reason(exc: BaseException) -> str:
    """The one-line reason a try failed: a pca error's own words, else the exception's type and text."""
    text = " ".join(str(exc).split())
    if isinstance(exc, PcaError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _secrets(config: Config, chosen: Sequence[Selected]) -> set[str]:
    """Every secret value the configuration holds (passwords, keys, secret options, URL passwords)."""
    found: set[str] = set()

    def collect(value: Any, key: str = "") -> None:
        if isinstance(value, Secret):
            found.add(value.reveal())
        elif isinstance(value, str):
            if is_secret_key(key):
                found.add(value)
            password = split_credentials(value)[2] if "://" in value else None
            if password:
                found.add(password)
        elif isinstance(value, dict):
            for name, item in value.items():
                collect(item, str(name))
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item, key)
        elif isinstance(value, msgspec.Struct):
            for field in msgspec.structs.fields(value):
                collect(getattr(value, field.name), field.name)

    collect(config)
    for selected in chosen:
        collect(selected.options)
    return {secret for secret in found if len(secret) >= 3}  # shorter ones would blank out ordinary words


def _scrub(text: str, secrets: set[str]) -> str:
    """``text`` with every secret, and the password of any credentialed URL, replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return mask_credentials(text)
