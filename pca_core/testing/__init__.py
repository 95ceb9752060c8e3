"""Public test helpers for plugin authors: the conformance suites and what they need.

Importing these needs pytest. The pytest plugin :mod:`pca_core.testing.plugin` is registered through the
``pytest11`` entry point, so nothing has to be enabled by hand. The names are imported on first use, so
that loading that plugin in every pytest run imports no suite and no plugin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pytest

# Asked for before the suite's modules are imported, so that a failing check shows its values even from
# an editable install (pytest only rewrites the files a wheel lists).
pytest.register_assert_rewrite("pca_core.testing.transport", "pca_core.testing.waiting",
                               "pca_core.testing.artifact_repo", "pca_core.testing._artifact_harness",
                               "pca_core.testing.log_publisher", "pca_core.testing.publishing")

if TYPE_CHECKING:
    from pca_core.testing.artifact_repo import ArtifactRepoConformance, RepoFactory
    from pca_core.testing.broker import Broker
    from pca_core.testing.building import build_plugin
    from pca_core.testing.file_receiver import FileReceiver
    from pca_core.testing.gating import requires
    from pca_core.testing.log_publisher import LogPublisherConformance, PublisherFactory
    from pca_core.testing.memory import MemoryBroker
    from pca_core.testing.receiver import LogReceiver
    from pca_core.testing.repo_remote import Credentials, RepoRemote
    from pca_core.testing.transport import TransportConformance, TransportFactory
    from pca_core.testing.waiting import Inbox, StateLog, wait_until

__all__ = [
    "ArtifactRepoConformance",
    "Broker",
    "Credentials",
    "FileReceiver",
    "Inbox",
    "LogPublisherConformance",
    "LogReceiver",
    "MemoryBroker",
    "PublisherFactory",
    "RepoFactory",
    "RepoRemote",
    "StateLog",
    "TransportConformance",
    "TransportFactory",
    "build_plugin",
    "requires",
    "wait_until",
]

_MODULES = {
    "ArtifactRepoConformance": "artifact_repo",
    "Broker": "broker",
    "Credentials": "repo_remote",
    "FileReceiver": "file_receiver",
    "Inbox": "waiting",
    "LogPublisherConformance": "log_publisher",
    "LogReceiver": "receiver",
    "MemoryBroker": "memory",
    "PublisherFactory": "log_publisher",
    "RepoFactory": "artifact_repo",
    "RepoRemote": "repo_remote",
    "StateLog": "waiting",
    "TransportConformance": "transport",
    "TransportFactory": "transport",
    "build_plugin": "building",
    "requires": "gating",
    "wait_until": "waiting",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
