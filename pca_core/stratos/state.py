"""What the agent knows of the control plane: topology, tenants, signups and domain mappings.

:class:`AgentState` routes each received message to the models of its topic tree. A message that does
not decode is logged once, with its topic and what was wrong, and skipped: the models stay as they were
and the agent keeps running.
"""

from __future__ import annotations

import logging

from pca_core.api.transport import Message
from pca_core.stratos.events import EventDecodeError
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
                    _log.warning("malformed event skipped: %s", exc)
                    return False
                return True
        return True
