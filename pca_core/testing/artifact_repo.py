"""The artifact repository conformance suite: what every ArtifactRepo plugin must do against its remotes."""

from __future__ import annotations

import traceback
import uuid

from pca_core.api.plugin import Capability
from pca_core.testing._artifact_harness import SEED, ArtifactRepoHarness, RepoFactory, password_forms
from pca_core.testing._tree import files_holding, snapshot
from pca_core.testing.gating import requires
from pca_core.testing.repo_remote import RepoRemote

__all__ = ["ArtifactRepoConformance", "RepoFactory"]


class ArtifactRepoConformance(ArtifactRepoHarness):
    """The behaviour every artifact repository plugin must show; subclass it in the plugin's tests.

    The subclass names the plugin and provides the remotes; the suite builds every repository through
    discovery and :func:`~pca_core.testing.build_plugin`, exactly as the agent does, so the entry point
    and the plugin's checks are tested too::

        from pca_core.testing import ArtifactRepoConformance, RepoRemote

        class TestGitConformance(ArtifactRepoConformance):
            plugin = "git"                          # the name in the pca.artifact_repos entry point group
            control_entries = frozenset({".git"})   # the plugin's own entries in a working directory

            @pytest.fixture
            def remote(self) -> Iterator[RepoRemote]:  # required: a repository this test owns
                ...

            @pytest.fixture
            def credentialed_remote(self) -> Iterator[RepoRemote]:  # required with "credentials"
                ...

            @pytest.fixture
            def repo_options(self) -> dict:         # optional: the plugin's own options table
                return {"timeout": 5}

    The suite commits its own files to each remote before a test uses it. Tests of a capability the
    plugin's class does not declare (``push``, ``credentials``) are skipped with a reason naming it,
    before any remote is asked for; a class that declares ``credentials`` must provide
    ``credentialed_remote``, whose :attr:`~RepoRemote.credentials` are set.

    Attributes:
        plugin: the entry point name of the repository under test; the subclass must set it.
        control_entries: names of the entries the plugin keeps at the top of a working directory (its
            metadata, e.g. ``.git``): left out where the suite compares files with the remote's, and
            where it checks that a failed sync left the files as they were (a plugin may keep what it
            fetched). Nothing is left out where it searches for a password.
        operation_timeout: how long the plugin may take to give up on a remote that does not answer; the
            ``repo_options`` fixture should set the plugin's own timeout to at most this.
        call_timeout: how long any one call of the plugin may take in these tests before it fails them.
        liveness_margin: added to a timeout the plugin was given, to bound how late it may return.
    """

    # -- clone, pull, remove ----------------------------------------------------------------------------

    def test_the_first_sync_clones_the_remote(self, make_repo: RepoFactory, origin: RepoRemote) -> None:
        """The first sync reports a change from no revision to the remote's, and writes the remote's files."""
        spec = self.spec(origin)
        result = self.sync(make_repo(), spec)
        assert (result.changed, result.previous, result.revision) == (True, None, origin.head())
        assert self.files(spec) == origin.files()

    def test_a_sync_with_nothing_new_changes_nothing(self, make_repo: RepoFactory,
                                                     origin: RepoRemote) -> None:
        """A second sync reports ``changed=False``, the same revision before and after, and writes nothing."""
        repo, spec = make_repo(), self.spec(origin)
        first = self.sync(repo, spec)
        before = self.contents(spec)
        again = self.sync(repo, spec)
        assert (again.changed, again.previous, again.revision) == (False, first.revision, first.revision)
        assert self.contents(spec) == before, "a sync with nothing new changed the working directory"

    def test_a_new_remote_revision_is_synced_and_local_files_survive(
            self, make_repo: RepoFactory, origin: RepoRemote) -> None:
        """A new revision is pulled: changed and added files written, deleted ones gone, local ones kept."""
        repo, spec = make_repo(), self.spec(origin)
        first = self.sync(repo, spec)
        local = {"uploads/user.dat": uuid.uuid4().bytes, "notes.txt": b"written on the instance\n"}
        for name, content in local.items():
            (self.path(spec) / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path(spec) / name).write_bytes(content)
        changes = {"index.html": b"<h1>v2</h1>\n", "lib/util.py": None, "README": None,
                   "new/page.html": b"new page\n", "assets/all-bytes.bin": bytes(range(255, -1, -1))}
        new = origin.commit(changes, "pca conformance: a new revision")
        result = self.sync(repo, spec)
        assert (result.changed, result.previous, result.revision) == (True, first.revision, new)
        assert self.files(spec) == {**origin.files(), **local}
        assert self.call(lambda: repo.current_revision(spec), "current_revision()") == new

    def test_a_revision_that_would_overwrite_a_local_change_is_refused(
            self, make_repo: RepoFactory, origin: RepoRemote) -> None:
        """Pulling over a locally changed file raises ArtifactSyncError and changes nothing at all."""
        repo, spec = make_repo(), self.spec(origin)
        first = self.sync(repo, spec)
        (self.path(spec) / "index.html").write_bytes(b"edited on the instance\n")
        origin.commit({"index.html": b"<h1>v2</h1>\n", "README": b"changed too\n"},
                      "pca conformance: a conflict")
        before = self.contents(spec)
        self.sync_fails(repo, spec, "over a local change")
        assert self.contents(spec) == before, "a refused sync changed the working directory"
        assert self.call(lambda: repo.current_revision(spec), "current_revision()") == first.revision
        # Once the local change is undone, the same revision is pulled.
        (self.path(spec) / "index.html").write_bytes(SEED["index.html"])
        result = self.sync(repo, spec)
        assert (result.changed, result.revision) == (True, origin.head())
        assert self.files(spec) == origin.files()

    def test_an_unreachable_remote_raises_in_time_and_changes_nothing(
            self, make_repo: RepoFactory, origin: RepoRemote) -> None:
        """A first sync from a dead URL raises ArtifactSyncError in time; the directory stays as it was."""
        repo = make_repo()
        limit = self.operation_timeout + self.liveness_margin
        existing = self.spec(origin, "existing", url=origin.dead_url)
        self.path(existing).mkdir()
        (self.path(existing) / "kept.txt").write_bytes(b"here before\n")
        before = snapshot(self.path(existing))
        self.sync_fails(repo, existing, "from a dead URL into an existing directory", limit)
        assert snapshot(self.path(existing)) == before, "a failed first sync changed the directory"
        absent = self.spec(origin, "absent", url=origin.dead_url)
        self.sync_fails(repo, absent, "from a dead URL into a new directory", limit)
        assert not self.path(absent).exists(), "a failed first sync left a working directory behind"
        assert self.call(lambda: repo.current_revision(existing), "current_revision()") is None

    def test_a_remote_outage_fails_the_sync_and_the_next_one_catches_up(
            self, make_repo: RepoFactory, origin: RepoRemote) -> None:
        """With the server stopped a sync raises in time and changes nothing; once it is back, it pulls."""
        repo, spec = make_repo(), self.spec(origin)
        first = self.sync(repo, spec)
        new = origin.commit({"index.html": b"<h1>during the outage</h1>\n"}, "pca conformance: outage")
        before = self.contents(spec)
        with self.outage(origin):
            self.sync_fails(repo, spec, "with the server stopped",
                            self.operation_timeout + self.liveness_margin)
        assert self.contents(spec) == before, "a failed sync changed the working directory"
        assert self.call(lambda: repo.current_revision(spec), "current_revision()") == first.revision
        result = self.sync(repo, spec)
        assert (result.changed, result.previous, result.revision) == (True, first.revision, new)
        assert self.files(spec) == origin.files()

    def test_current_revision_is_none_without_a_checkout_and_the_head_after_one(
            self, make_repo: RepoFactory, origin: RepoRemote) -> None:
        """``current_revision`` is None for a missing or a plain directory, the remote's head once synced."""
        repo, spec, plain = make_repo(), self.spec(origin), self.spec(origin, "plain")
        self.path(plain).mkdir()
        (self.path(plain) / "index.html").write_bytes(b"not a checkout\n")
        assert self.call(lambda: repo.current_revision(spec), "current_revision()") is None
        assert self.call(lambda: repo.current_revision(plain), "current_revision()") is None
        self.sync(repo, spec)
        assert self.call(lambda: repo.current_revision(spec), "current_revision()") == origin.head()

    def test_remove_deletes_the_working_directory(self, make_repo: RepoFactory, origin: RepoRemote) -> None:
        """``remove`` deletes the working directory; the next sync is a first checkout again."""
        repo, spec = make_repo(), self.spec(origin)
        self.sync(repo, spec)
        (self.path(spec) / "notes.txt").write_bytes(b"local\n")
        self.call(lambda: repo.remove(spec), "remove()")
        assert not self.path(spec).exists() and not self.path(spec).is_symlink()
        assert self.call(lambda: repo.current_revision(spec), "current_revision()") is None
        result = self.sync(repo, spec)
        assert (result.changed, result.previous, result.revision) == (True, None, origin.head())
        assert self.files(spec) == origin.files()

    def test_two_paths_sync_at_once_from_two_threads(self, make_repo: RepoFactory,
                                                     origin: RepoRemote) -> None:
        """One repository object syncs two working directories from two threads at once, twice."""
        repo = make_repo()
        specs = [self.spec(origin, "first"), self.spec(origin, "second")]
        firsts = self.concurrently(repo.sync, specs)
        assert [(r.changed, r.revision) for r in firsts] == [(True, origin.head())] * 2
        new = origin.commit({"index.html": b"<h1>v2</h1>\n", "added.txt": b"added\n"}, "pca conformance: v2")
        seconds = self.concurrently(repo.sync, specs)
        assert [(r.changed, r.previous, r.revision) for r in seconds] == [(True, firsts[0].revision, new)] * 2
        for spec in specs:
            assert self.files(spec) == origin.files(), f"{spec.path} differs from the remote"

    # -- push -------------------------------------------------------------------------------------------

    @requires(Capability.PUSH)
    def test_commit_and_push_makes_a_new_remote_revision(self, make_repo: RepoFactory,
                                                          origin: RepoRemote) -> None:
        """Local changes (modified, deleted, added) become a new remote revision holding exactly them."""
        repo, spec = make_repo(), self.spec(origin)
        first = self.sync(repo, spec)
        root = self.path(spec)
        (root / "index.html").write_bytes(b"<h1>edited on the instance</h1>\n")
        (root / "README").unlink()
        (root / "uploads").mkdir()
        (root / "uploads" / "photo.bin").write_bytes(uuid.uuid4().bytes * 64)
        revision = self.call(lambda: repo.commit_and_push(spec, "pca conformance: local changes"),
                             "commit_and_push()")
        assert isinstance(revision, str) and revision != first.revision, (
            f"commit_and_push() returned {revision!r}, not a new revision")
        assert origin.head() == revision, "the remote's head is not the revision commit_and_push() returned"
        assert origin.files() == self.files(spec), "the remote's new revision does not hold the local files"
        assert self.call(lambda: repo.current_revision(spec), "current_revision()") == revision
        again = self.sync(repo, spec)
        assert (again.changed, again.revision) == (False, revision)

    @requires(Capability.PUSH)
    def test_commit_and_push_with_nothing_to_commit_returns_none(self, make_repo: RepoFactory,
                                                                 origin: RepoRemote) -> None:
        """With no local change ``commit_and_push`` returns None and the remote keeps its revision."""
        repo, spec = make_repo(), self.spec(origin)
        first = self.sync(repo, spec)
        before = self.contents(spec)
        assert self.call(lambda: repo.commit_and_push(spec, "nothing"), "commit_and_push()") is None
        assert origin.head() == first.revision
        assert self.contents(spec) == before

    # -- credentials ------------------------------------------------------------------------------------

    @requires(Capability.CREDENTIALS)
    def test_the_right_password_clones_and_pulls(self, make_repo: RepoFactory,
                                                 credentialed_origin: RepoRemote) -> None:
        """With the remote's user name and password, the first sync clones and a later one pulls."""
        repo, spec = make_repo(), self.spec(credentialed_origin)
        first = self.sync(repo, spec)
        assert (first.changed, first.revision) == (True, credentialed_origin.head())
        new = credentialed_origin.commit({"index.html": b"<h1>v2</h1>\n"}, "pca conformance: v2")
        result = self.sync(repo, spec)
        assert (result.changed, result.previous, result.revision) == (True, first.revision, new)
        assert self.files(spec) == credentialed_origin.files()

    @requires(Capability.CREDENTIALS)
    def test_a_wrong_password_is_refused_without_revealing_it(self, make_repo: RepoFactory,
                                                               credentialed_origin: RepoRemote) -> None:
        """A wrong password raises ArtifactSyncError; neither its message nor its chain holds the password."""
        wrong = f"wr0ng:{uuid.uuid4().hex[:8]}/p@ss w0rd"
        spec = self.spec(credentialed_origin, password=wrong)
        error = self.sync_fails(make_repo(), spec, "with a wrong password")
        shown = "".join(traceback.format_exception(error))
        leaked = [form.decode() for form in password_forms(spec.username, wrong) if form.decode() in shown]
        assert not leaked, f"the error shows the password (as {leaked!r}): {error}"
        assert not self.path(spec).exists(), "a refused first sync left a working directory behind"

    @requires(Capability.CREDENTIALS)
    def test_the_password_is_written_to_no_file(self, make_repo: RepoFactory,
                                                credentialed_origin: RepoRemote) -> None:
        """After a clone, a pull and (with ``push``) a push, no file in the checkouts holds the password."""
        repo, spec = make_repo(), self.spec(credentialed_origin)
        self.sync(repo, spec)
        credentialed_origin.commit({"index.html": b"<h1>v2</h1>\n"}, "pca conformance: v2")
        self.sync(repo, spec)
        if Capability.PUSH in self._capabilities:
            (self.path(spec) / "pushed.txt").write_bytes(b"pushed\n")
            self.call(lambda: repo.commit_and_push(spec, "pca conformance: push"), "commit_and_push()")
        assert spec.password is not None
        holding = files_holding(self._checkouts, password_forms(spec.username, spec.password.reveal()))
        assert not holding, f"files that hold the password: {holding}"
