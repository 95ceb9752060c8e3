"""The tenant model: every tenant by id and by domain, kept from the ``tenant/#`` events.

The model follows Stratos' ``TenantManager`` (``stratos/processors.md`` §8) with these differences:

- **Every complete event is reconciled** (DESIGN §7). Java applies only the first ``CompleteTenantEvent``
  and ignores the rest, so one lost event stays lost. Here each one is decoded and the model is made
  equal to it; the differences are reported with the same changes the incremental events produce:
  removals first, then additions and domain changes in the snapshot's order. A complete event whose
  bytes equal those the model still reflects (the last complete event applied, with no incremental
  change since) is skipped without decoding: reconciling it would change nothing. The model keeps that
  one payload and compares bytes (:class:`~pca_core.stratos.snapshot.SnapshotModel`).
- **Before the first complete event, incremental events are dropped** without being decoded (debug
  log), as Java's INIT gate does: the snapshot asked for at startup is what the model starts from.
- **Domains are re-keyed** (processors.md §13 #15): ``TenantUpdatedEvent`` moves the tenant to its new
  domain, and a ``TenantCreatedEvent`` for a known id with another domain is an update, so no stale
  domain key is left behind. A created or updated tenant that already has that domain changes nothing.
- **Unknown ids are no-ops** with a debug log: removing or updating a tenant that is not there.
- **Incomplete records are skipped** with a warning: a tenant needs an id and a domain. Java would store
  a null domain (or throw on a null ``tenants`` list; such a complete event changes nothing here either).

As in Java, the super tenant (-1234, ``carbon.super``) is present from the start, and a complete event
that does not list it keeps it: Stratos' manager is created with it and never loses it to a snapshot.

Events are applied by one thread (the dispatcher); observers are called on it after the model is
updated. Readers on other threads take the model's lock, so they never see half an update.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pca_core.stratos import events
from pca_core.stratos.excerpt import excerpt
from pca_core.stratos.snapshot import SnapshotModel

_log = logging.getLogger(__name__)

SUPER_TENANT_ID = -1234
"""The super tenant's id (WSO2 ``MultitenantConstants.SUPER_TENANT_ID``)."""
SUPER_TENANT_DOMAIN = "carbon.super"
"""The super tenant's domain (WSO2 ``MultitenantConstants.SUPER_TENANT_DOMAIN_NAME``)."""


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant of the Stratos control plane.

    Attributes:
        tenant_id: the tenant's id (-1234 for the super tenant).
        domain: the tenant's domain, e.g. ``acme.example.com``.
    """

    tenant_id: int
    domain: str


@dataclass(frozen=True, slots=True)
class TenantAdded:
    """A tenant appeared."""

    tenant_id: int
    domain: str


@dataclass(frozen=True, slots=True)
class TenantUpdated:
    """A tenant's domain changed."""

    tenant_id: int
    old_domain: str
    new_domain: str


@dataclass(frozen=True, slots=True)
class TenantRemoved:
    """A tenant went away; ``domain`` is the one it had."""

    tenant_id: int
    domain: str


TenantChange = TenantAdded | TenantUpdated | TenantRemoved
"""What a :class:`TenantModel` reports to its observers."""


class TenantModel(SnapshotModel[TenantChange]):
    """Tenants by id and by domain, from ``CompleteTenantEvent`` and the created/updated/removed events.

    Every update returns the list of changes it made (empty when nothing changed) and tells the observers
    the same changes.
    """

    COMPLETE = events.CompleteTenantEvent
    HANDLED = frozenset({events.CompleteTenantEvent, events.TenantCreatedEvent, events.TenantUpdatedEvent,
                         events.TenantRemovedEvent})
    GATED = True  # Java's INIT gate: the model starts from the snapshot requested at startup

    def __init__(self) -> None:
        super().__init__()
        self._by_id: dict[int, Tenant] = {SUPER_TENANT_ID: Tenant(SUPER_TENANT_ID, SUPER_TENANT_DOMAIN)}
        # Domain -> id. Domains are unique in Stratos; should two tenants share one anyway, the key
        # follows the last one written and is removed only by the tenant it points to.
        self._by_domain: dict[str, int] = {SUPER_TENANT_DOMAIN: SUPER_TENANT_ID}

    @property
    def tenants(self) -> Mapping[int, Tenant]:
        """Every tenant by id: a read-only snapshot, safe to iterate while events are applied."""
        with self._lock:
            return MappingProxyType(dict(self._by_id))

    def tenant(self, tenant_id: int) -> Tenant | None:
        """The tenant with this id, or None."""
        with self._lock:
            return self._by_id.get(tenant_id)

    def tenant_by_domain(self, domain: str) -> Tenant | None:
        """The tenant with this domain, or None."""
        with self._lock:
            tenant_id = self._by_domain.get(domain)
            return None if tenant_id is None else self._by_id.get(tenant_id)

    # -- applying, with the lock held --------------------------------------------------------------

    def _apply_event(self, event: events.Event) -> list[TenantChange] | None:
        if isinstance(event, events.CompleteTenantEvent):
            return self._apply_complete(event)
        return self._apply_incremental(event)

    def _apply_incremental(self, event: events.Event) -> list[TenantChange]:
        if isinstance(event, events.TenantCreatedEvent):
            tenant = _tenant(event.tenant)
            if tenant is None:
                _log.warning("TenantCreatedEvent without a tenant id and domain, ignored: %s", excerpt(event))
                return []
            return self._put(tenant)
        if isinstance(event, events.TenantUpdatedEvent):
            if event.tenant_id is None or event.tenant_domain is None:
                _log.warning("TenantUpdatedEvent without a tenant id and domain, ignored: %s", excerpt(event))
                return []
            if event.tenant_id not in self._by_id:
                _log.debug("TenantUpdatedEvent for unknown tenant %s, ignored", event.tenant_id)
                return []
            return self._put(Tenant(event.tenant_id, event.tenant_domain))
        assert isinstance(event, events.TenantRemovedEvent)
        if event.tenant_id is None or event.tenant_id not in self._by_id:
            _log.debug("TenantRemovedEvent for unknown tenant %s, ignored", event.tenant_id)
            return []
        return [self._remove(event.tenant_id)]

    def _apply_complete(self, event: events.CompleteTenantEvent) -> list[TenantChange] | None:
        if event.tenants is None:
            # Java throws here and stays uninitialized; a snapshot without a list says nothing.
            _log.warning("CompleteTenantEvent without a tenant list, ignored")
            return None
        # The super tenant is part of every snapshot, as the Java manager never loses it.
        wanted = {SUPER_TENANT_ID: Tenant(SUPER_TENANT_ID, SUPER_TENANT_DOMAIN)}
        skipped = [record for record in event.tenants if _tenant(record) is None]
        if skipped:  # one line for the snapshot, however many records it lacks
            _log.warning("CompleteTenantEvent: %d tenant(s) without an id and domain skipped, the first: %s",
                         len(skipped), excerpt(skipped[0]))
        for record in event.tenants:
            tenant = _tenant(record)
            if tenant is not None:
                wanted[tenant.tenant_id] = tenant  # a repeated id: the last one wins, as in Java
        changes: list[TenantChange] = [
            self._remove(tenant_id) for tenant_id in list(self._by_id) if tenant_id not in wanted
        ]
        for tenant in wanted.values():
            changes.extend(self._put(tenant))
        if not self.initialized:  # this snapshot is the first: the base class sets the flag on return
            _log.info("tenants initialized: %d tenants", len(self._by_id))
        return changes

    def _put(self, tenant: Tenant) -> list[TenantChange]:
        old = self._by_id.get(tenant.tenant_id)
        if old == tenant:
            return []
        self._by_id[tenant.tenant_id] = tenant
        self._by_domain[tenant.domain] = tenant.tenant_id
        if old is None:
            _log.debug("tenant added: %s %s", tenant.tenant_id, tenant.domain)
            return [TenantAdded(tenant.tenant_id, tenant.domain)]
        self._drop_domain(old)
        _log.debug("tenant updated: %s %s -> %s", tenant.tenant_id, old.domain, tenant.domain)
        return [TenantUpdated(tenant.tenant_id, old.domain, tenant.domain)]

    def _remove(self, tenant_id: int) -> TenantRemoved:
        tenant = self._by_id.pop(tenant_id)
        self._drop_domain(tenant)
        _log.debug("tenant removed: %s %s", tenant_id, tenant.domain)
        return TenantRemoved(tenant_id, tenant.domain)

    def _drop_domain(self, tenant: Tenant) -> None:
        # Only the tenant the key points to may remove it (see the note on _by_domain).
        if self._by_domain.get(tenant.domain) == tenant.tenant_id:
            del self._by_domain[tenant.domain]


def _tenant(record: events.Tenant | None) -> Tenant | None:
    if record is None or record.tenant_id is None or record.tenant_domain is None:
        return None
    return Tenant(record.tenant_id, record.tenant_domain)
