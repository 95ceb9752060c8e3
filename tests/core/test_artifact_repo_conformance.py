"""The artifact repository conformance suite itself: marked, gated by capability, and failing broken plugins.

Each check runs the suite in a pytester session against pca-git (or a subclass of it that breaks one rule of
the contract) and a git daemon of its own.
"""

import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

HEADER = '''
import os
from pathlib import Path

import pytest
from pca_git import GitRepo

from pca_core.api import ArtifactSyncError, SyncResult
from pca_core.testing import ArtifactRepoConformance, Credentials
from tests.support.gitremote import GitRemote
from tests.support.gitserver import GitDaemon, HttpGitServer

STARTED = Path(os.environ["PCA_TEST_STARTED"])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def daemon(served):
    with GitDaemon(served) as running:
        yield running


@pytest.fixture(scope="module")
def http(served):
    with HttpGitServer(served, "user", "pass:word") as running:
        yield running


class Base(ArtifactRepoConformance):
    plugin = "git"
    control_entries = frozenset({".git"})
    operation_timeout = 5.0

    @pytest.fixture
    def repo_options(self):
        return {"timeout": 5.0}

    @pytest.fixture
    def repo_class(self):
        return Plugin

    @pytest.fixture
    def remote(self, daemon, served, request):
        STARTED.write_text("a remote was asked for")
        return GitRemote(daemon, served, request.node.name)
'''

CREDENTIALED = '''
    @pytest.fixture
    def credentialed_remote(self, http, served, request):
        STARTED.write_text("a remote was asked for")
        return GitRemote(http, served, request.node.name, Credentials("user", "pass:word"))
'''


@pytest.fixture
def suite(pytester, tmp_path, monkeypatch):
    """``suite(plugin_source, *pytest_args, credentialed=True)``: runs the suite against ``Plugin``."""
    started = tmp_path / "started"
    monkeypatch.setenv("PCA_TEST_STARTED", str(started))

    def run(plugin: str, *args: str, credentialed: bool = True):
        source = HEADER + (CREDENTIALED if credentialed else "") + "\n\n" + textwrap.dedent(plugin) + (
            "\n\nclass TestSuite(Base):\n    pass\n")
        pytester.makepyfile(test_suite=source)
        return pytester.runpytest("-p", "no:cacheprovider", "-rs", *args)

    run.started = started
    return run


def test_the_suite_is_marked_and_skips_what_the_plugin_does_not_declare_before_asking_for_a_remote(suite):
    result = suite('''
        class Plugin(GitRepo):
            capabilities = frozenset()
    ''', "-m", "artifact_repo_conformance", "-k", "commit_and_push or password", credentialed=False)
    outcomes = result.parseoutcomes()
    assert outcomes == {"skipped": 5, "deselected": outcomes["deselected"]} and outcomes["deselected"] >= 8
    result.stdout.fnmatch_lines(["*does not declare capability 'push'*",
                                 "*does not declare capability 'credentials'*"])
    assert not suite.started.exists(), "a remote was asked for by a test that was skipped"
    assert suite("class Plugin(GitRepo):\n    pass\n", "-m", "not artifact_repo_conformance",
                 "--collect-only").parseoutcomes()["deselected"] >= 13


def test_a_plugin_declaring_credentials_must_provide_a_credentialed_remote(suite):
    result = suite("class Plugin(GitRepo):\n    pass\n", "-k", "password", credentialed=False)
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*declares capability 'credentials', so the class must provide a "
                                 "credentialed_remote fixture*"])


BROKEN = {
    "a change reported by every sync": ("nothing_new", '''
        class Plugin(GitRepo):
            def sync(self, spec):
                result = super().sync(spec)
                return type(result)(True, result.revision, result.previous)
    '''),
    "no previous revision reported": ("synced_and_local_files_survive", '''
        class Plugin(GitRepo):
            def sync(self, spec):
                result = super().sync(spec)
                return type(result)(result.changed, result.revision, None)
    '''),
    "an outage reported as nothing new": ("outage", '''
        class Plugin(GitRepo):
            def sync(self, spec):
                try:
                    return super().sync(spec)
                except ArtifactSyncError:
                    current = self.current_revision(spec)
                    if current is None:
                        raise
                    return SyncResult(False, current, current)
    '''),
    "no current revision": ("current_revision", '''
        class Plugin(GitRepo):
            def current_revision(self, spec):
                return None
    '''),
    "a made-up revision pushed": ("makes_a_new_remote_revision", '''
        class Plugin(GitRepo):
            def commit_and_push(self, spec, message):
                super().commit_and_push(spec, message)
                return "0" * 40
    '''),
    "a local change overwritten": ("overwrite_a_local_change", '''
        class Plugin(GitRepo):
            def sync(self, spec):
                try:
                    return super().sync(spec)
                except ArtifactSyncError:
                    self.remove(spec)
                    return super().sync(spec)
    '''),
    "a directory left by a failed first sync": ("unreachable", '''
        class Plugin(GitRepo):
            def sync(self, spec):
                Path(spec.path).mkdir(parents=True, exist_ok=True)
                return super().sync(spec)
    '''),
    "remove keeping the directory": ("remove_deletes", '''
        class Plugin(GitRepo):
            def remove(self, spec):
                pass
    '''),
    "a commit when nothing changed": ("nothing_to_commit", '''
        class Plugin(GitRepo):
            def commit_and_push(self, spec, message):
                return super().commit_and_push(spec, message) or self.current_revision(spec)
    '''),
    "the password in an error": ("wrong_password", '''
        class Plugin(GitRepo):
            def sync(self, spec):
                try:
                    return super().sync(spec)
                except ArtifactSyncError as exc:
                    raise ArtifactSyncError("git", f"{exc} (password {spec.password.reveal()})") from None
    '''),
    "the password in a file": ("written_to_no_file", '''
        class Plugin(GitRepo):
            def sync(self, spec):
                result = super().sync(spec)
                Path(spec.path, ".git", "remembered").write_text(spec.password.reveal())
                return result
    '''),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_plugin_that_breaks_the_contract_fails_the_suite(suite, broken):
    test, plugin = BROKEN[broken]
    result = suite(plugin, "-k", test)
    result.assert_outcomes(failed=1)


def test_importing_the_pytest_plugin_imports_no_suite_and_no_artifact_repository():
    code = ("import sys, pca_core.testing.plugin; "
            "print(sorted(m for m in sys.modules if m.startswith(('pca_core.testing.', 'pca_git', 'dulwich', "
            "'pca_core.runtime')) and m != 'pca_core.testing.plugin'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
