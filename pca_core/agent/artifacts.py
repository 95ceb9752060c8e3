"""The artifact-updated flow: which repository goes where, with which credentials, and when it is synced.

This is the core side of ``original-agent.md`` §6: the cluster filter, the application path checks, the
repository password decrypted with the payload's ``CARTRIDGE_KEY``, the single- and multi-tenant paths,
the first checkout with its retries and initial backup, the periodic update task, and the removal on
signup removal. Talking to the repository is the selected :class:`~pca_core.api.artifact_repo.ArtifactRepo`
plugin's job.

Fixed here, compared with the original (§10 #24-27): the update task of a repository never overlaps
itself nor an event-driven sync of the same repository; new credentials in a later event are used (they
are never stored); removing an unknown tenant's repository is a no-op; a tenant id or configured path that
would leave the application path is refused.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pca_core.api.artifact_repo import ArtifactRepo, RepoSpec, SyncResult
from pca_core.api.errors import ArtifactSyncError
from pca_core.api.secrets import Secret, mask_credentials, split_credentials
from pca_core.config import Config
from pca_core.runtime.scheduler import Scheduler, Task
from pca_core.stratos.events import ArtifactUpdatedEvent

_log = logging.getLogger(__name__)

SUPER_TENANT_ID = "-1234"
INVALID_PATH = "Repository path cannot be accessed, or is invalid."
"""The original agent's error text for a missing or relative APPLICATION_PATH (operators grep for it)."""
BACKUP_SUFFIX = "_backup"
_NAME = "artifacts"


def decrypt_password(ciphertext: str, key: Secret) -> Secret:
    """Decrypts a Stratos repository password: base64 of AES-ECB (AES-128 for a 16-character key).

    Stratos encrypts with PKCS5 padding; older test data used zero bytes: both are removed.

    Raises:
        ArtifactSyncError: the ciphertext or the key is malformed (neither is put in the message).
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:
        data = base64.b64decode(ciphertext, validate=True)
        if not data:
            raise ValueError("empty")
        decryptor = Cipher(algorithms.AES(key.reveal().encode()), modes.ECB()).decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        text = _unpad(plain).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise ArtifactSyncError(_NAME, f"the repository password cannot be decrypted: "
                                       f"{type(exc).__name__}") from None
    return Secret(text)


def _unpad(plain: bytes) -> bytes:
    count = plain[-1] if plain else 0
    if 1 <= count <= 16 and plain.endswith(bytes([count]) * count):
        return plain[:-count]  # PKCS5
    return plain.rstrip(b"\0")  # zero padding (or none)


def repo_path(config: Config, tenant_id: str | None) -> str:
    """Where a tenant's artifacts go (§6.2): the application path, or below it on a multi-tenant cartridge.

    Raises:
        ArtifactSyncError: the application path is unset, relative or the root; the tenant id is not a
            number; or the configured sub-path would leave the application path.
    """
    app_path = config.agent.application_path or config.identity.application_path
    if not app_path or not PurePosixPath(app_path).is_absolute():
        raise ArtifactSyncError(_NAME, f"{INVALID_PATH} Failed to process artifact updated event. "
                                       f"[App Path] {app_path}")
    root = os.path.normpath(app_path)
    if root == "/":
        raise ArtifactSyncError(_NAME, f"{INVALID_PATH} The application path must not be the file "
                                       f"system root. [App Path] {app_path}")
    if not config.identity.multitenant:
        return root
    if tenant_id == SUPER_TENANT_ID:
        sub = config.artifacts.super_tenant_repository_path
    else:
        if not _is_tenant_id(tenant_id):
            raise ArtifactSyncError(_NAME, f"tenant id {tenant_id!r} is not a number")
        sub = f"{config.artifacts.tenant_repository_path.rstrip('/')}/{tenant_id}"
    path = os.path.normpath(os.path.join(root, sub.strip("/")))
    if path == root or os.path.commonpath([root, path]) != root:
        raise ArtifactSyncError(_NAME, f"the repository path of tenant {tenant_id} would leave the "
                                       f"application path {root}: {path}")
    return path


@contextlib.contextmanager
def _as_sync_error(action: str) -> Iterator[None]:
    """Turns an OSError (a file system or plugin failure) into an ArtifactSyncError naming ``action``.

    The message holds the action (paths only) and the reason, never a URL or a credential.
    """
    try:
        yield
    except shutil.Error as exc:  # copytree: a list of (source, destination, reason), one per file
        failures = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        first = f"{failures[0][0]}: {failures[0][2]}" if failures and len(failures[0]) == 3 else str(exc)
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise ArtifactSyncError(_NAME, f"{action} failed: {first}{more}") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename else ""
        raise ArtifactSyncError(_NAME, f"{action} failed: {reason}{where}") from None


def _is_tenant_id(text: str | None) -> bool:
    return bool(text) and text is not None and text.removeprefix("-").isdigit() and text.isascii()


@dataclass(frozen=True, slots=True)
class ArtifactUpdate:
    """A sync to announce (the ArtifactUpdatedEvent extension, activation).

    Attributes:
        spec: the repository synced.
        result: what the sync did.
        event: the event that asked for it; None for the periodic task and ``pca sync``.
        scheduled: whether the periodic task did it.
    """

    spec: RepoSpec
    result: SyncResult
    event: ArtifactUpdatedEvent | None = None
    scheduled: bool = False


@dataclass(eq=False)
class _Tracked:
    spec: RepoSpec
    lock: threading.Lock = field(default_factory=threading.Lock)
    generation: int = 0  # a newer event or a removal makes pending clone retries stale
    checked_out: bool = False
    task: Task | None = None


class ArtifactManager:
    """Runs the artifact flow of every repository this instance holds (one per tenant path).

    :meth:`handle`, :meth:`sync_all` and :meth:`remove_tenant` run on the caller's thread (the agent's
    lifecycle lane); clone retries are posted back to it through ``post`` after ``clone_interval``; the
    periodic update task runs on the scheduler's workers and posts its announcements through ``post``.

    Args:
        config: the agent's configuration (application path, tenancy, CARTRIDGE_KEY, artifacts).
        repo: the artifact repository plugin.
        scheduler: the core scheduler (clone retries, the periodic update task).
        post: runs a named job on the agent's lifecycle lane.
        on_update: called on the lane after each sync to announce (see :class:`ArtifactUpdate`).
    """

    def __init__(self, config: Config, repo: ArtifactRepo, scheduler: Scheduler, *,
                 post: Callable[[str, Callable[[], object]], None],
                 on_update: Callable[[ArtifactUpdate], None]) -> None:
        self.config = config
        self.repo = repo
        self.scheduler = scheduler
        self.post = post
        self.on_update = on_update
        self.revision: str | None = None
        self._repos: dict[str, _Tracked] = {}
        self._closed = False
        # Syncs since the start: (succeeded, failed, seconds they took in all); updated under _stats_lock.
        self.syncs_ok = self.syncs_failed = 0
        self.sync_seconds = 0.0
        self._stats_lock = threading.Lock()

    @property
    def known(self) -> bool:
        """Whether a repository was named by an ArtifactUpdatedEvent yet."""
        return bool(self._repos)

    def wants(self, event: ArtifactUpdatedEvent) -> bool:
        """Whether the event is for this cluster (others are skipped, as by the original)."""
        return bool(event.cluster_id) and event.cluster_id == self.config.identity.cluster_id

    def spec_for(self, event: ArtifactUpdatedEvent) -> RepoSpec:
        """The repository the event names: its URL without credentials, its path, its credentials.

        Raises:
            ArtifactSyncError: no repository URL, a bad application path or tenant id, or a password that
                cannot be decrypted.
        """
        if not event.repo_url:
            raise ArtifactSyncError(_NAME, "ArtifactUpdatedEvent without a repository URL")
        url, url_user, url_password = split_credentials(event.repo_url)
        password = Secret(url_password) if url_password is not None else None
        if event.repo_password:
            key = self.config.identity.cartridge_key
            if key is None:
                raise ArtifactSyncError(_NAME, "the repository password needs CARTRIDGE_KEY in the payload")
            password = decrypt_password(event.repo_password, key)
        tenant_id = event.tenant_id or self.config.identity.tenant_id
        return RepoSpec(url=url, path=repo_path(self.config, tenant_id), branch=self.config.artifacts.branch,
                        username=event.repo_user_name or url_user, password=password, tenant_id=tenant_id)

    # --- Event-driven (lane) -----------------------------------------------------------------------------

    def handle(self, event: ArtifactUpdatedEvent) -> None:
        """Acts on an ArtifactUpdatedEvent: checks the repository out or syncs it, then announces it.

        A failed first checkout is retried ``clone_retries`` times, ``clone_interval`` seconds apart.
        """
        if not self.wants(event):
            _log.debug("artifact update for cluster %s skipped", event.cluster_id)
            return
        try:
            spec = self.spec_for(event)
        except ArtifactSyncError as exc:
            _log.error("%s", exc)
            return
        tracked = self._repos.get(spec.path)
        if tracked is None:
            tracked = self._repos[spec.path] = _Tracked(spec)
        else:
            tracked.spec = spec  # new credentials or URL take effect now (STRATOS-1582)
        tracked.generation += 1
        self._attempt(tracked, event, 1, tracked.generation)

    def _attempt(self, tracked: _Tracked, event: ArtifactUpdatedEvent, attempt: int, generation: int) -> None:
        if generation != tracked.generation or self._closed:
            return  # a newer event, a removal or the shutdown took over
        spec = tracked.spec
        first = not tracked.checked_out
        try:
            with tracked.lock:
                if first:
                    self._backup(spec)
                result = self._sync(spec)
        except ArtifactSyncError as exc:
            self._failed(tracked, event, attempt, generation, exc)
            return
        if first:
            tracked.checked_out = True
            if result.previous is None:
                _log.info("Git clone executed: [tenant-id] %s [repo-url] %s", spec.tenant_id,
                          mask_credentials(spec.url))
            self._schedule(tracked)
        self._announce(ArtifactUpdate(spec, result, event))

    def _failed(self, tracked: _Tracked, event: ArtifactUpdatedEvent, attempt: int, generation: int,
                exc: ArtifactSyncError) -> None:
        retries = self.config.artifacts.clone_retries
        if tracked.checked_out:
            _log.error("%s", exc)
        elif attempt <= retries:
            interval = self.config.artifacts.clone_interval
            _log.warning("Retrying git clone attempt %d failed: %s; attempt %d of %d in %g s", attempt, exc,
                         attempt + 1, retries + 1, interval)
            self.scheduler.call_later(interval, lambda: self.post(
                "artifact checkout retry", lambda: self._attempt(tracked, event, attempt + 1, generation)),
                name="artifact checkout retry")
        else:
            _log.error("All attempts failed while retrying git clone: %s", exc)

    def sync_all(self) -> None:
        """Syncs every known repository now (``pca sync``); announces those that changed.

        Raises:
            ArtifactSyncError: no repository is known yet.
        """
        if not self._repos:
            raise ArtifactSyncError(_NAME, "no artifact repository is known yet")
        for tracked in list(self._repos.values()):
            try:
                with tracked.lock:
                    result = self._sync(tracked.spec)
            except ArtifactSyncError as exc:
                _log.error("%s", exc)
                continue
            tracked.checked_out = True
            if result.changed:
                self._announce(ArtifactUpdate(tracked.spec, result))

    def remove_tenant(self, tenant_id: str) -> bool:
        """Removes a tenant's repository (signup removal, §6.7) and restores its initial backup.

        Nothing happens for a tenant without a checkout here. Returns whether something was removed.
        """
        try:
            path = repo_path(self.config, tenant_id)
        except ArtifactSyncError as exc:
            _log.error("signup removal: %s", exc)
            return False
        tracked = self._repos.get(path)
        owner = tracked.spec.tenant_id if tracked is not None else (
            tenant_id if self.config.identity.multitenant else self.config.identity.tenant_id)
        if owner != tenant_id:
            _log.info("signup removal of tenant %s: %s belongs to tenant %s; kept", tenant_id, path, owner)
            return False
        self._repos.pop(path, None)
        spec = tracked.spec if tracked is not None else RepoSpec(url="", path=path, tenant_id=tenant_id)
        lock = tracked.lock if tracked is not None else threading.Lock()
        if tracked is not None:
            tracked.generation += 1
            if tracked.task is not None:
                tracked.task.cancel()
        try:
            with lock, _as_sync_error(f"removal of {path}"):
                removed = self.repo.current_revision(spec) is not None
                if removed:
                    self.repo.remove(spec)
                    _log.info("artifacts of tenant %s removed from %s", tenant_id, path)
                restored = self._restore(spec)
        except ArtifactSyncError as exc:
            _log.error("signup removal: %s", exc)
            return False
        return removed or restored

    def close(self) -> None:
        """Stops the periodic tasks and drops pending retries."""
        self._closed = True
        for tracked in self._repos.values():
            if tracked.task is not None:
                tracked.task.cancel()

    # --- The periodic update task (scheduler workers) -----------------------------------------------------

    def _schedule(self, tracked: _Tracked) -> None:
        settings = self.config.artifacts
        _log.info("ADC configuration: [auto-commit] %s, [auto-checkout] %s, [interval] %s",
                  settings.auto_commit, settings.auto_checkout, settings.update_interval)
        if tracked.task is not None or not settings.enable_update:
            return
        if not (settings.auto_checkout or settings.auto_commit):
            _log.info("artifact update task not started: auto-checkout and auto-commit are both off")
            return
        tracked.task = self.scheduler.every(settings.update_interval, lambda: self._tick(tracked),
                                            name=f"artifact update {tracked.spec.tenant_id}")

    def _tick(self, tracked: _Tracked) -> None:
        # An event-driven sync of the same repository is running: this tick has nothing to add.
        if not tracked.lock.acquire(blocking=False):
            _log.debug("artifact update of %s skipped: a sync is running", tracked.spec.path)
            return
        try:
            if self._repos.get(tracked.spec.path) is not tracked:
                return  # removed meanwhile
            result = self._tick_locked(tracked.spec)
        finally:
            tracked.lock.release()
        _log.debug("ArtifactUpdateTask end of iteration.")
        if result is not None and result.changed:
            update = ArtifactUpdate(tracked.spec, result, scheduled=True)
            self.post("artifact update (scheduled)", lambda: self._announce(update))

    def _tick_locked(self, spec: RepoSpec) -> SyncResult | None:
        settings = self.config.artifacts
        result = None
        # Pull first, then commit and push on top: a push then never needs a rebase (the original
        # committed first and pulled with --rebase).
        if settings.auto_checkout:
            try:
                result = self._sync(spec)
            except ArtifactSyncError as exc:
                _log.error("%s", exc)
        if settings.auto_commit:
            message = f"tenant [{spec.tenant_id}]'s artifacts committed to local repo at {spec.path}"
            try:
                with _as_sync_error(f"commit of {spec.path}"):
                    revision = self.repo.commit_and_push(spec, message)
            except ArtifactSyncError as exc:
                _log.error("%s", exc)
            else:
                if revision is not None:
                    self.revision = revision
        return result

    # --- Helpers -----------------------------------------------------------------------------------------

    def _sync(self, spec: RepoSpec) -> SyncResult:
        """Syncs ``spec`` through the plugin, counted and timed for the metrics.

        Raises:
            ArtifactSyncError: the sync failed (any error of the plugin becomes one).
        """
        started = time.monotonic()
        ok = False
        try:
            with _as_sync_error(f"sync of {spec.path}"):
                result = self.repo.sync(spec)
            ok = True
            return result
        finally:
            with self._stats_lock:
                self.sync_seconds += time.monotonic() - started
                if ok:
                    self.syncs_ok += 1
                else:
                    self.syncs_failed += 1

    def _announce(self, update: ArtifactUpdate) -> None:
        self.revision = update.result.revision
        self.on_update(update)

    def _backup(self, spec: RepoSpec) -> None:
        """Copies a non-empty path to ``<path>_backup`` before its first checkout (if configured).

        Raises:
            ArtifactSyncError: the copy failed; the partial backup was removed, so a retry starts over.
        """
        if not self.config.artifacts.initial_backup:
            return
        path = Path(spec.path)
        backup = Path(spec.path + BACKUP_SUFFIX)
        with _as_sync_error(f"initial backup of {path} to {backup}"):
            if os.path.lexists(backup) or not path.is_dir() or not any(path.iterdir()):
                return
            if self.repo.current_revision(spec) is not None:
                return  # a checkout of ours, not the initial content
            try:
                shutil.copytree(path, backup, symlinks=True)
            except OSError:
                shutil.rmtree(backup, ignore_errors=True)
                raise
        _log.info("initial artifacts of %s backed up to %s", path, backup)

    def _restore(self, spec: RepoSpec) -> bool:
        backup = Path(spec.path + BACKUP_SUFFIX)
        if not backup.is_dir():
            return False
        path = Path(spec.path)
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
        backup.rename(path)
        _log.info("initial artifacts of %s restored from %s", path, backup)
        return True
