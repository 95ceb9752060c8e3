"""What the artifact repository conformance suite is built on: its fixtures, remotes and helpers."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Final, Protocol, TypeVar
from urllib.parse import quote, quote_plus

import pytest

from pca_core.api.artifact_repo import ArtifactRepo, RepoSpec, SyncResult
from pca_core.api.errors import ArtifactSyncError
from pca_core.api.plugin import Capability
from pca_core.api.secrets import Secret
from pca_core.config import ArtifactsConfig, convert
from pca_core.runtime import discovery
from pca_core.testing._bounded import lookup_fixture, run_bounded
from pca_core.testing._tree import snapshot, working_files
from pca_core.testing.building import build_plugin
from pca_core.testing.gating import skip_undeclared, suite_plugin
from pca_core.testing.repo_remote import RepoRemote

__all__ = ["SEED", "ArtifactRepoHarness", "RepoFactory", "password_forms"]

_T = TypeVar("_T")

SEED: Final[Mapping[str, bytes]] = MappingProxyType({
    "index.html": b"<h1>v1</h1>\n",
    "README": b"read me\n",
    "lib/util.py": b"VALUE = 1\n",
    "assets/all-bytes.bin": bytes(range(256)) * 4,
    "empty.txt": b"",
    "docs/donn\u00e9es \u00e9t\u00e9.txt": "\u00fcn\u00efcode\n".encode(),
})
"""The files the suite commits to every remote before a test uses it."""


class RepoFactory(Protocol):
    """The type of the ``make_repo`` fixture."""

    def __call__(self, options: Mapping[str, Any] | None = None, **settings: Any) -> ArtifactRepo:
        """Builds an artifact repository of the plugin under test, closed again at teardown.

        Args:
            options: the plugin's options table; by default the ``repo_options`` fixture's.
            **settings: other :class:`pca_core.api.ArtifactsConfig` fields.
        """
        ...


class ArtifactRepoHarness:
    """The fixtures and helpers of :class:`~pca_core.testing.ArtifactRepoConformance`, without its tests."""

    plugin: ClassVar[str]
    control_entries: ClassVar[frozenset[str]] = frozenset()
    operation_timeout: ClassVar[float] = 60.0
    call_timeout: ClassVar[float] = 120.0
    liveness_margin: ClassVar[float] = 10.0

    _capabilities: frozenset[Capability]
    _checkouts: Path

    # -- fixtures -------------------------------------------------------------------------------------

    @pytest.fixture
    def repo_class(self) -> type[ArtifactRepo]:
        """The plugin's class, loaded through its entry point in ``pca.artifact_repos``."""
        return suite_plugin(self, discovery.ARTIFACT_REPOS, "artifact repository")

    @pytest.fixture(autouse=True)
    def _conformance_gate(self, request: pytest.FixtureRequest, repo_class: type[ArtifactRepo]) -> None:
        # Runs before the other fixtures, so a skipped test asks for no remote.
        skip_undeclared(request.function, repo_class.capabilities,
                        f"artifact repository plugin {self.plugin!r}")
        self._capabilities = frozenset(repo_class.capabilities)
        self._checkouts = request.getfixturevalue("tmp_path") / "checkouts"
        self._checkouts.mkdir()

    @pytest.fixture
    def origin(self, remote: RepoRemote) -> RepoRemote:
        """The ``remote`` fixture's repository, with the suite's files committed to it."""
        self._seed(remote)
        return remote

    @pytest.fixture
    def credentialed_origin(self, request: pytest.FixtureRequest) -> RepoRemote:
        """The ``credentialed_remote`` fixture's repository, with the suite's files committed to it."""
        # Looked up only after the capability check, so a plugin without credentials needs no such fixture.
        remote: RepoRemote | None = lookup_fixture(request, "credentialed_remote", None)
        if remote is None:
            pytest.fail(f"{type(self).__name__}: plugin {self.plugin!r} declares capability 'credentials', "
                        f"so the class must provide a credentialed_remote fixture", pytrace=False)
        if remote.credentials is None:
            pytest.fail(f"{type(self).__name__}: the credentialed_remote fixture's remote has no credentials",
                        pytrace=False)
        self._seed(remote)
        return remote

    @pytest.fixture
    def make_repo(self, request: pytest.FixtureRequest,
                  repo_class: type[ArtifactRepo]) -> Iterator[RepoFactory]:
        """Builds repositories of the plugin under test; closes all of them at teardown."""
        table: Mapping[str, Any] = lookup_fixture(request, "repo_options", {})
        made: list[ArtifactRepo] = []

        def make(options: Mapping[str, Any] | None = None, **settings: Any) -> ArtifactRepo:
            if "plugin" in settings:
                raise TypeError("make_repo() builds the class's own plugin; 'plugin' cannot be set")
            tree = {"plugin": self.plugin, "options": dict(table if options is None else options), **settings}
            config = convert(tree, ArtifactsConfig, source="make_repo()")
            repo = build_plugin(repo_class, config, key="artifacts",
                                source=f"{type(self).__name__}.repo_options")
            made.append(repo)
            return repo

        yield make
        failures = []
        for repo in reversed(made):
            outcome = run_bounded(repo.close, self.call_timeout)
            if not outcome.finished:
                failures.append(f"{type(repo).__name__}.close() did not return within {self.call_timeout} s")
            elif outcome.error is not None:
                failures.append(f"{type(repo).__name__}.close() raised {outcome.error!r}")
        if failures:
            pytest.fail("closing the test's repositories failed: " + "; ".join(failures), pytrace=False)

    # -- helpers --------------------------------------------------------------------------------------

    def spec(self, remote: RepoRemote, name: str = "app", *, url: str | None = None,
             password: str | None = None) -> RepoSpec:
        """A spec of ``remote`` (or ``url``) into the test's working directory ``name``.

        The remote's credentials go with it; ``password`` replaces the password.
        """
        credentials = remote.credentials
        username = credentials.username if credentials is not None else None
        if password is None and credentials is not None:
            password = credentials.password
        return RepoSpec(url=remote.url if url is None else url, path=str(self._checkouts / name),
                        username=username, password=Secret(password) if password is not None else None,
                        tenant_id="1")

    def call(self, call: Callable[[], _T], what: str, limit: float | None = None) -> _T:
        """Runs ``call``, failing the test unless it returns within ``limit`` s (``call_timeout``).

        Returns what it returned; raises what it raised.
        """
        limit = self.call_timeout if limit is None else limit
        outcome = run_bounded(call, limit)
        if not outcome.finished:
            pytest.fail(f"{what} did not return within {limit} s", pytrace=False)
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    def sync(self, repo: ArtifactRepo, spec: RepoSpec) -> SyncResult:
        """``repo.sync(spec)``, bounded; checks that it returned a :class:`~pca_core.api.SyncResult`."""
        result = self.call(lambda: repo.sync(spec), f"sync() of {spec.path}")
        assert isinstance(result, SyncResult), f"sync() returned {result!r}, not a SyncResult"
        return result

    def sync_fails(self, repo: ArtifactRepo, spec: RepoSpec, what: str,
                   limit: float | None = None) -> ArtifactSyncError:
        """Runs ``repo.sync(spec)``, which must raise ArtifactSyncError within ``limit`` s; returns it."""
        try:
            result = self.call(lambda: repo.sync(spec), f"sync() {what}", limit)
        except ArtifactSyncError as exc:
            return exc
        pytest.fail(f"sync() {what} returned {result!r} instead of raising ArtifactSyncError", pytrace=False)

    def path(self, spec: RepoSpec) -> Path:
        """The working directory of ``spec``."""
        return Path(spec.path)

    def files(self, spec: RepoSpec) -> dict[str, bytes]:
        """The files of ``spec``'s working directory, without the plugin's :attr:`control_entries`."""
        return working_files(self.path(spec), self.control_entries)

    def contents(self, spec: RepoSpec) -> dict[str, tuple[object, ...]]:
        """A snapshot of ``spec``'s working directory, without the plugin's :attr:`control_entries`."""
        return snapshot(self.path(spec), self.control_entries)

    @contextmanager
    def outage(self, remote: RepoRemote) -> Iterator[None]:
        """Stops ``remote``'s server for the duration of the block and starts it again, whatever happens."""
        remote.stop()
        try:
            yield
        finally:
            remote.start()

    def concurrently(self, call: Callable[[RepoSpec], _T], specs: Sequence[RepoSpec]) -> list[_T]:
        """Runs ``call(spec)`` for every spec at once, one thread each; returns the results in order."""
        start = threading.Barrier(len(specs))
        results: list[Any] = [None] * len(specs)
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                start.wait(self.call_timeout)
                results[i] = call(specs[i])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,), name=f"pca-conformance-{i}", daemon=True)
                   for i in range(len(specs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(self.call_timeout)
        assert not any(t.is_alive() for t in threads), (
            f"concurrent calls still running after {self.call_timeout} s (deadlock?)")
        if errors:
            raise errors[0]
        return results

    def _seed(self, remote: RepoRemote) -> None:
        revision = remote.commit(SEED, "pca conformance: the suite's files")
        assert revision == remote.head(), "RepoRemote.commit() did not return the new head()"


def password_forms(username: str | None, password: str) -> list[bytes]:
    """The password as it could be written: plain, URL-encoded, and inside a basic Authorization header."""
    forms = {password, quote(password, safe=""), quote(password), quote_plus(password)}
    header = base64.b64encode(f"{username or ''}:{password}".encode()).decode()
    return sorted({form.encode() for form in forms} | {header.encode()})
