"""Application signups and domain mappings, from the ``application/signup/#`` and ``domain/mapping/#`` trees.

Two models, as in Stratos (``stratos/processors.md`` §9): :class:`ApplicationSignupModel` holds the
signups by (application id, tenant id); :class:`DomainMappingModel` holds the domain mappings by cluster
id and domain name. ``CompleteApplicationSignUpsEvent`` feeds both: the signups to the first, every
signup's ``domainMappings`` to the second. Route ``application/signup/#`` to both models and
``domain/mapping/#`` to the second; each ignores the events that are not its own.

Differences from Java, on purpose:

- **Every complete event is reconciled** (DESIGN §7), by each model on its own. Java applies only the
  first one, so one lost event stays lost. Here each one is decoded and the model is made equal to it,
  as if its entries had been added in order to an empty model; a complete event whose bytes equal those
  the model still reflects (the last complete event it applied, with no incremental change since) is
  skipped without decoding, as reconciling it would change nothing (each model keeps that one payload
  and compares bytes: :class:`~pca_core.stratos.snapshot.SnapshotModel`). The
  differences are reported with the
  changes the incremental events produce (removals first, then additions and updates in the snapshot's
  order); ``SignupUpdated``, for a signup whose record changed, is the one change no incremental event
  produces.
- **Incremental events before the first complete event** follow Java: signup added/removed are applied
  (Java has no INIT gate on them); domain mapping added/removed are dropped without being decoded (debug
  log) until the first complete signups event (Java's INIT gate on ``DomainMappingManager``, which only
  that event sets).
- **A null ``domainMappings``** in a complete event counts as none (processors.md §13 #17: on master the
  NullPointerException meant domain mappings never initialized). A null ``clusterIds`` in
  ``ApplicationSignUpAddedEvent`` counts as none too (§13 #16; Java throws).
- **Signups added twice: the first stays** (Java's first-wins; the added event carries only cluster ids,
  so it must not replace a richer record). A later complete event does replace such a record
  (§13 #16: in Java an early added event hid the snapshot's repositories for good).
- **Domain mappings are unique per (cluster id, domain name)** (§13 #18: Java appends duplicates, and
  removes by those two keys). An added event for a known pair with other fields replaces the mapping
  (``DomainMappingUpdated``); an identical one changes nothing.
- **No cross-model gates.** Java drops a domain mapping whose tenant is unknown to ``TenantManager`` or
  whose application is unknown to the applications model; the outcome depended on races between
  receivers, and the agent keeps no applications model. The tenant-lock leak of §13 #18 has no
  counterpart here.
- **Signup records do not carry domain mappings**: Java's copy in the signup goes stale on the first
  domain mapping event; the :class:`DomainMappingModel` is the one place for them.
- **Unknown keys are no-ops** with a debug log (removing a signup or mapping that is not there);
  records without their keys (application id and tenant id; cluster id and domain name) are skipped with
  a warning.

Events are applied by one thread (the dispatcher); observers are called on it after the model is
updated. Readers on other threads take the model's lock, so they never see half an update.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, TypeVar

from pca_core.api.secrets import Secret
from pca_core.stratos import events
from pca_core.stratos.excerpt import excerpt
from pca_core.stratos.snapshot import SnapshotModel

_log = logging.getLogger(__name__)

# -- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArtifactRepository:
    """Where a signup's artifacts for one cartridge come from.

    Attributes:
        cartridge_type: the cartridge type, e.g. ``php``.
        alias: the cartridge's alias in the application.
        private_repo: whether the repository needs credentials.
        repo_url: the repository URL.
        repo_username: the user name for a private repository.
        repo_password: the password, still encrypted with the cartridge key; never printed.
    """

    cartridge_type: str | None
    alias: str | None
    private_repo: bool
    repo_url: str | None
    repo_username: str | None
    repo_password: Secret | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class Signup:
    """A tenant's signup to an application.

    Attributes:
        application_id: the application.
        tenant_id: the tenant.
        cluster_ids: the application's clusters.
        artifact_repositories: where each cartridge's artifacts come from; empty for a signup known only
            from an added event.
        added_timestamp: when it was signed up (ms since the epoch); None when unknown.
    """

    application_id: str
    tenant_id: int
    cluster_ids: tuple[str, ...] = ()
    artifact_repositories: tuple[ArtifactRepository, ...] = ()
    added_timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class DomainMapping:
    """A domain name routed to a cluster of a tenant's application.

    Attributes:
        cluster_id: the cluster serving the domain.
        domain_name: the domain, e.g. ``shop.acme.example.com``.
        application_id: the application.
        tenant_id: the tenant.
        service_name: the cluster's service (cartridge type).
        context_path: the path under the domain, e.g. ``/shop``.
    """

    cluster_id: str
    domain_name: str
    application_id: str | None = None
    tenant_id: int | None = None
    service_name: str | None = None
    context_path: str | None = None


# -- changes ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignupAdded:
    """A signup appeared."""

    application_id: str
    tenant_id: int


@dataclass(frozen=True, slots=True)
class SignupUpdated:
    """A signup's record changed (only a complete event does that)."""

    application_id: str
    tenant_id: int


@dataclass(frozen=True, slots=True)
class SignupRemoved:
    """A signup went away."""

    application_id: str
    tenant_id: int


@dataclass(frozen=True, slots=True)
class DomainMappingAdded:
    """A domain mapping appeared."""

    cluster_id: str
    domain_name: str


@dataclass(frozen=True, slots=True)
class DomainMappingUpdated:
    """A domain mapping's application, tenant, service or context path changed."""

    cluster_id: str
    domain_name: str


@dataclass(frozen=True, slots=True)
class DomainMappingRemoved:
    """A domain mapping went away."""

    cluster_id: str
    domain_name: str


SignupChange = SignupAdded | SignupUpdated | SignupRemoved
"""What an :class:`ApplicationSignupModel` reports to its observers."""
DomainMappingChange = DomainMappingAdded | DomainMappingUpdated | DomainMappingRemoved
"""What a :class:`DomainMappingModel` reports to its observers."""

# -- the models ------------------------------------------------------------------------------------

C = TypeVar("C")
K = TypeVar("K")
V = TypeVar("V")


class _KeyedModel(SnapshotModel[C], Generic[C, K, V]):
    """What both models share: records by key, reconciled with each complete signups event."""

    COMPLETE = events.CompleteApplicationSignUpsEvent
    _WHAT = ""  # what the records are, for the log
    # Both models read each complete signups event: the signup model reports its problems, for both, so
    # that one message makes one warning.
    _REPORTS = False

    def __init__(self) -> None:
        super().__init__()
        self._records: dict[K, V] = {}

    def _apply_event(self, event: events.Event) -> list[C] | None:
        if not isinstance(event, events.CompleteApplicationSignUpsEvent):
            return self._apply_incremental(event)
        if event.application_sign_ups is None:
            # Java throws on this; a snapshot without a list says nothing, so it changes nothing.
            _log.log(logging.WARNING if self._REPORTS else logging.DEBUG,
                     "CompleteApplicationSignUpsEvent without a signup list, ignored")
            return None
        if self._REPORTS:
            _report_unkeyed(event.application_sign_ups)
        changes = self._reconcile(self._wanted(event.application_sign_ups))
        if not self.initialized:  # this snapshot is the first: the base class sets the flag on return
            _log.info("%ss initialized: %d", self._WHAT, len(self._records))
        return changes

    def _reconcile(self, wanted: dict[K, V]) -> list[C]:
        changes = [self._remove(key) for key in list(self._records) if key not in wanted]
        for record in wanted.values():
            changes.extend(self._put(record, replace=True))
        return changes

    def _apply_incremental(self, event: events.Event) -> list[C]:
        raise NotImplementedError

    def _wanted(self, signups: list[events.ApplicationSignUp]) -> dict[K, V]:
        raise NotImplementedError

    def _put(self, record: V, *, replace: bool) -> list[C]:
        raise NotImplementedError

    def _remove(self, key: K) -> C:
        raise NotImplementedError


class ApplicationSignupModel(_KeyedModel[SignupChange, tuple[str, int], Signup]):
    """Application signups by (application id, tenant id), from the ``application/signup/#`` events.

    Every update returns the list of changes it made (empty when nothing changed) and tells the observers
    the same changes.
    """

    HANDLED = frozenset({events.CompleteApplicationSignUpsEvent, events.ApplicationSignUpAddedEvent,
                         events.ApplicationSignUpRemovedEvent})
    GATED = False  # Java has no INIT gate on signup added/removed
    _WHAT = "signup"
    _REPORTS = True

    @property
    def signups(self) -> Mapping[tuple[str, int], Signup]:
        """Every signup by (application id, tenant id): a read-only snapshot, safe to iterate."""
        with self._lock:
            return MappingProxyType(dict(self._records))

    def signup(self, application_id: str, tenant_id: int) -> Signup | None:
        """The tenant's signup to the application, or None."""
        with self._lock:
            return self._records.get((application_id, tenant_id))

    def signups_for(self, application_id: str) -> list[Signup]:
        """The application's signups, one per tenant."""
        with self._lock:
            return [s for (app, _), s in self._records.items() if app == application_id]

    def _apply_incremental(self, event: events.Event) -> list[SignupChange]:
        if isinstance(event, events.ApplicationSignUpAddedEvent):
            if event.application_id is None or event.tenant_id is None:
                _log.warning("ApplicationSignUpAddedEvent without application and tenant id, ignored: %s",
                             excerpt(event))
                return []
            signup = Signup(event.application_id, event.tenant_id, tuple(event.cluster_ids or ()))
            # First wins, as in Java: the event carries cluster ids only and must not hide a full record.
            return self._put(signup, replace=False)
        assert isinstance(event, events.ApplicationSignUpRemovedEvent)
        if event.application_id is None or event.tenant_id is None:
            _log.warning("ApplicationSignUpRemovedEvent without application and tenant id, ignored: %s",
                         excerpt(event))
            return []
        key = (event.application_id, event.tenant_id)
        if key not in self._records:
            _log.debug("ApplicationSignUpRemovedEvent for unknown signup %s/%s, ignored", *key)
            return []
        return [self._remove(key)]

    def _wanted(self, signups: list[events.ApplicationSignUp]) -> dict[tuple[str, int], Signup]:
        wanted: dict[tuple[str, int], Signup] = {}
        for record in signups:
            if record.application_id is None or record.tenant_id is None:
                continue  # reported by _report_unkeyed
            # A repeated (application, tenant): the first wins, as in Java.
            wanted.setdefault((record.application_id, record.tenant_id), _signup(record))
        return wanted

    def _put(self, record: Signup, *, replace: bool) -> list[SignupChange]:
        key = (record.application_id, record.tenant_id)
        old = self._records.get(key)
        if old == record:
            return []
        if old is not None and not replace:
            _log.debug("signup %s/%s already known, added event ignored", *key)
            return []
        self._records[key] = record
        _log.debug("signup %s: %s/%s", "added" if old is None else "updated", *key)
        return [SignupAdded(*key) if old is None else SignupUpdated(*key)]

    def _remove(self, key: tuple[str, int]) -> SignupChange:
        del self._records[key]
        _log.debug("signup removed: %s/%s", *key)
        return SignupRemoved(*key)


class DomainMappingModel(_KeyedModel[DomainMappingChange, tuple[str, str], DomainMapping]):
    """Domain mappings by (cluster id, domain name), from ``domain/mapping/#`` and the complete signups event.

    Every update returns the list of changes it made (empty when nothing changed) and tells the observers
    the same changes.
    """

    HANDLED = frozenset({events.CompleteApplicationSignUpsEvent, events.DomainMappingAddedEvent,
                         events.DomainMappingRemovedEvent})
    GATED = True  # Java's INIT gate on DomainMappingManager, which only the complete signups event sets
    _WHAT = "domain mapping"

    @property
    def mappings(self) -> Mapping[tuple[str, str], DomainMapping]:
        """Every mapping by (cluster id, domain name): a read-only snapshot, safe to iterate."""
        with self._lock:
            return MappingProxyType(dict(self._records))

    def mapping(self, cluster_id: str, domain_name: str) -> DomainMapping | None:
        """The mapping of this domain to this cluster, or None."""
        with self._lock:
            return self._records.get((cluster_id, domain_name))

    def mappings_for(self, cluster_id: str) -> list[DomainMapping]:
        """The cluster's mappings, in the order they were added."""
        with self._lock:
            return [m for (cluster, _), m in self._records.items() if cluster == cluster_id]

    def _apply_incremental(self, event: events.Event) -> list[DomainMappingChange]:
        assert isinstance(event, events.DomainMappingAddedEvent | events.DomainMappingRemovedEvent)
        name = type(event).__name__
        if event.cluster_id is None or event.domain_name is None:
            _log.warning("%s without cluster id and domain name, ignored: %s", name, excerpt(event))
            return []
        if isinstance(event, events.DomainMappingAddedEvent):
            return self._put(_mapping(event), replace=True)
        key = (event.cluster_id, event.domain_name)
        if key not in self._records:
            _log.debug("DomainMappingRemovedEvent for unknown mapping %s %s, ignored", *key)
            return []
        return [self._remove(key)]

    def _wanted(self, signups: list[events.ApplicationSignUp]) -> dict[tuple[str, str], DomainMapping]:
        wanted: dict[tuple[str, str], DomainMapping] = {}
        for signup in signups:
            for record in signup.domain_mappings or ():  # null: none (§13 #17)
                if record.cluster_id is None or record.domain_name is None:
                    continue  # reported by _report_unkeyed
                # A repeated (cluster, domain): the last wins, as a series of added events would have it.
                wanted[(record.cluster_id, record.domain_name)] = _mapping(record)
        return wanted

    def _put(self, record: DomainMapping, *, replace: bool) -> list[DomainMappingChange]:
        key = (record.cluster_id, record.domain_name)
        old = self._records.get(key)
        if old == record:
            return []
        self._records[key] = record
        _log.debug("domain mapping %s: %s %s", "added" if old is None else "updated", *key)
        return [DomainMappingAdded(*key) if old is None else DomainMappingUpdated(*key)]

    def _remove(self, key: tuple[str, str]) -> DomainMappingChange:
        del self._records[key]
        _log.debug("domain mapping removed: %s %s", *key)
        return DomainMappingRemoved(*key)


def _report_unkeyed(signups: list[events.ApplicationSignUp]) -> None:
    """One warning for a complete signups event's signups and domain mappings that lack their keys."""
    bad_signups = [s for s in signups if s.application_id is None or s.tenant_id is None]
    bad_mappings = [m for s in signups for m in s.domain_mappings or ()
                    if m.cluster_id is None or m.domain_name is None]
    if bad_signups or bad_mappings:
        # No record is quoted: a signup carries its repositories' passwords.
        _log.warning("CompleteApplicationSignUpsEvent: %d signup(s) without application and tenant id and %d "
                     "domain mapping(s) without cluster id and domain name skipped",
                     len(bad_signups), len(bad_mappings))


# -- conversions from the wire ---------------------------------------------------------------------


def _signup(record: events.ApplicationSignUp) -> Signup:
    assert record.application_id is not None and record.tenant_id is not None
    return Signup(
        application_id=record.application_id,
        tenant_id=record.tenant_id,
        cluster_ids=tuple(record.cluster_ids or ()),
        artifact_repositories=tuple(_repository(r) for r in record.artifact_repositories or ()),
        # Java writes 0 for "not set" (a long); keep None for unknown.
        added_timestamp=record.signup_added_timestamp or None,
    )


def _repository(record: events.ArtifactRepository) -> ArtifactRepository:
    return ArtifactRepository(
        cartridge_type=record.cartridge_type,
        alias=record.alias,
        private_repo=bool(record.private_repo),
        repo_url=record.repo_url,
        repo_username=record.repo_username,
        repo_password=None if record.repo_password is None else Secret(record.repo_password),
    )


def _mapping(record: events.DomainMapping | events.DomainMappingAddedEvent) -> DomainMapping:
    assert record.cluster_id is not None and record.domain_name is not None
    return DomainMapping(
        cluster_id=record.cluster_id,
        domain_name=record.domain_name,
        application_id=record.application_id,
        tenant_id=record.tenant_id,
        service_name=record.service_name,
        context_path=record.context_path,
    )
