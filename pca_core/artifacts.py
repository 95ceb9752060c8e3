"""The artifact-updated flow: which repository goes where, with which credentials.

This is the core side of ``original-agent.md`` §6.1 to §6.3: the cluster filter, the application path
checks, the repository password decrypted with the payload's ``CARTRIDGE_KEY``, the single- and
multi-tenant paths; the sync itself is the selected :class:`~pca_core.artifact_repo.ArtifactRepo`
plugin's job.
"""

from __future__ import annotations

import base64
import binascii
import logging
from pathlib import PurePosixPath

from pca_core.artifact_repo import ArtifactRepo, RepoSpec, SyncResult
from pca_core.config import Config
from pca_core.errors import ArtifactSyncError
from pca_core.events import ArtifactUpdatedEvent
from pca_core.secret import Secret, mask_credentials

_log = logging.getLogger(__name__)

SUPER_TENANT_ID = "-1234"
INVALID_PATH = "Repository path cannot be accessed, or is invalid."
"""The original agent's error text for a missing or relative APPLICATION_PATH (operators grep for it)."""


def decrypt_password(ciphertext: str, key: Secret) -> Secret:
    """Decrypts a Stratos repository password: base64 of AES-128-ECB under the UTF-8 key.

    Stratos encrypts with PKCS5 padding; older test data used zero bytes. Both are removed, as the
    original agent did by dropping every non-printable character.

    Raises:
        ArtifactSyncError: the ciphertext or the key is malformed (neither is put in the message).
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:
        data = base64.b64decode(ciphertext, validate=True)
        decryptor = Cipher(algorithms.AES(key.reveal().encode()), modes.ECB()).decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
    except (binascii.Error, ValueError) as exc:
        raise ArtifactSyncError("artifacts", f"the repository password cannot be decrypted: "
                                             f"{type(exc).__name__}") from None
    return Secret("".join(ch for ch in plain.decode("utf-8", errors="ignore") if ch.isprintable()))


def repo_path(config: Config, tenant_id: str | None) -> str:
    """Where a tenant's artifacts go (§6.2): the application path, or below it on a multi-tenant cartridge.

    Raises:
        ArtifactSyncError: the application path is unset or relative, or the tenant id would leave it.
    """
    app_path = config.agent.application_path or config.identity.application_path
    if not app_path or not PurePosixPath(app_path).is_absolute():
        raise ArtifactSyncError("artifacts", f"{INVALID_PATH} Failed to process artifact updated event. "
                                             f"[App Path] {app_path}")
    if not config.identity.multitenant:
        return app_path
    if tenant_id == SUPER_TENANT_ID:
        sub = config.artifacts.super_tenant_repository_path
    else:
        if not tenant_id or not tenant_id.lstrip("-").isdigit():
            raise ArtifactSyncError("artifacts", f"tenant id {tenant_id!r} is not a number")
        sub = f"{config.artifacts.tenant_repository_path.rstrip('/')}/{tenant_id}"
    return str(PurePosixPath(app_path) / sub.strip("/"))


class ArtifactManager:
    """Turns ArtifactUpdatedEvents for this cluster into syncs of the selected repository plugin.

    Args:
        config: the agent's configuration (application path, tenancy, CARTRIDGE_KEY).
        repo: the artifact repository plugin.
    """

    def __init__(self, config: Config, repo: ArtifactRepo) -> None:
        self.config = config
        self.repo = repo
        self.spec: RepoSpec | None = None
        self.revision: str | None = None

    def wants(self, event: ArtifactUpdatedEvent) -> bool:
        """Whether the event is for this cluster (others are skipped, as by the original)."""
        return bool(event.cluster_id) and event.cluster_id == self.config.identity.cluster_id

    def spec_for(self, event: ArtifactUpdatedEvent) -> RepoSpec:
        """The repository the event names, with its password decrypted.

        Raises:
            ArtifactSyncError: no repository URL, a bad application path, or a password that cannot be
                decrypted.
        """
        if not event.repo_url:
            raise ArtifactSyncError("artifacts", "ArtifactUpdatedEvent without a repository URL")
        password = None
        if event.repo_password:
            key = self.config.identity.cartridge_key
            if key is None:
                raise ArtifactSyncError("artifacts",
                                        "the repository password needs CARTRIDGE_KEY in the payload")
            password = decrypt_password(event.repo_password, key)
        return RepoSpec(url=event.repo_url, path=repo_path(self.config, event.tenant_id),
                        username=event.repo_user_name or None, password=password, tenant_id=event.tenant_id)

    def update(self, event: ArtifactUpdatedEvent) -> SyncResult:
        """Syncs the repository the event names.

        Raises:
            ArtifactSyncError: the event cannot be acted on, or the sync failed.
        """
        self.spec = self.spec_for(event)
        return self.sync()

    def sync(self) -> SyncResult:
        """Syncs the last repository named again (``pca sync``, a restart, the periodic task).

        Raises:
            ArtifactSyncError: no repository is known yet, or the sync failed.
        """
        if self.spec is None:
            raise ArtifactSyncError("artifacts", "no artifact repository is known yet")
        result = self.repo.sync(self.spec)
        self.revision = result.revision
        _log.info("artifacts synced from %s into %s: %s", mask_credentials(self.spec.url), self.spec.path,
                  f"revision {result.revision}" if result.changed else "nothing new")
        return result
