"""What the agent knows of the control plane: topology, tenants, signups and domain mappings.

:class:`AgentState` routes each received message to the models of its topic tree. A message that does
not decode is logged once as a WARNING, with its topic and what was wrong (never its body), and skipped:
the models stay as they were and the agent keeps running. An event class that Stratos does not have (a
newer control plane's) is no fault of the message: it is logged at INFO the first time its name is seen.
"""

from __future__ import annotations

import logging

from pca_core.api.transport import Message
from pca_core.stratos.events import EventDecodeError, UnknownEventError
from pca_core.stratos.excerpt import excerpt
from pca_core.stratos.signups import ApplicationSignupModel, DomainMappingModel
from pca_core.stratos.tenants import TenantModel
from pca_core.stratos.topology import TopologyModel

_log = logging.getLogger(__name__)


class AgentState:
    """The agent's models, kept current from the messages of its subscriptions.

    Attributes:
        topology: services, clusters, cluster instances and members.
        tenants: tenants by id and domain.
        signups: application signups by (application id, tenant id).
        domain_mappings: domain mappings by (cluster id, domain name).
    """

    UNKNOWN_NAMES_REMEMBERED = 256
    """Unknown event names remembered as already reported; when full the memory starts afresh."""

    def __init__(self) -> None:
        self.topology = TopologyModel()
        self.tenants = TenantModel()
        self.signups = ApplicationSignupModel()
        self.domain_mappings = DomainMappingModel()
        # CompleteApplicationSignUpsEvent carries both the signups and their domain mappings.
        self._routes = (
            ("topology/", (self.topology,)),
            ("tenant/", (self.tenants,)),
            ("application/signup/", (self.signups, self.domain_mappings)),
            ("domain/mapping/", (self.domain_mappings,)),
        )
        self._unknown: set[str] = set()
        self.malformed = 0  # messages skipped because they did not decode
        self.unknown = 0  # messages of event classes this agent does not know, skipped

    def handle(self, message: Message) -> bool:
        """Applies one message to the models of its topic tree.

        Returns:
            False when the message was malformed and skipped (it has been logged), True otherwise.
        """
        for prefix, models in self._routes:
            if message.topic.startswith(prefix):
                try:
                    for model in models:
                        model.handle(message.topic, message.payload)
                except EventDecodeError as exc:
                    self.skipped(exc)
                    return False
                return True
        return True

    def skipped(self, error: EventDecodeError) -> None:
        """Logs a message skipped because it did not decode: what :meth:`handle` does, for other callers.

        A malformed message is a WARNING each time; an unknown event class is INFO once per name (and
        DEBUG after that), as long as the bounded memory of names reported holds it.
        """
        if not isinstance(error, UnknownEventError):
            self.malformed += 1
            _log.warning("malformed event skipped: %s", error)
            return
        self.unknown += 1
        name = excerpt(error.name)  # what is remembered is bounded too
        if name in self._unknown:
            _log.debug("unknown event class skipped: %s", error)
            return
        if len(self._unknown) >= self.UNKNOWN_NAMES_REMEMBERED:
            self._unknown.clear()
        self._unknown.add(name)
        _log.info("unknown event class skipped (reported once per name): %s", error)
