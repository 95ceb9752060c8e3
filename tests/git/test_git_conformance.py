"""pca-git passes the artifact repository conformance suite: over a git daemon, and HTTP with basic auth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pca_core.testing import ArtifactRepoConformance, Credentials, RepoRemote
from tests.support.gitremote import GitRemote
from tests.support.gitserver import GitDaemon, HttpGitServer

USER, PASSWORD = "deployer", "s3cr@t:pa/ss w0rd+%"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def daemon(served) -> Iterator[GitDaemon]:
    with GitDaemon(served) as running:
        yield running


@pytest.fixture(scope="module")
def http(served) -> Iterator[HttpGitServer]:
    with HttpGitServer(served, USER, PASSWORD) as running:
        yield running


class TestGitConformance(ArtifactRepoConformance):
    """Every behaviour of the ArtifactRepo contract: git:// for the plain remote, http:// with credentials."""

    plugin = "git"
    control_entries = frozenset({".git"})
    operation_timeout = 5.0

    @pytest.fixture
    def repo_options(self) -> dict:
        return {"timeout": self.operation_timeout}

    @pytest.fixture
    def remote(self, daemon, served, request) -> RepoRemote:
        return GitRemote(daemon, served, request.node.name)

    @pytest.fixture
    def credentialed_remote(self, http, served, request) -> RepoRemote:
        return GitRemote(http, served, request.node.name, Credentials(USER, PASSWORD))
