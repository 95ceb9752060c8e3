"""What is git-specific in the git artifact repository, against a git daemon and an HTTP git server.

What every artifact repository must do is tested by the conformance suite, in test_git_conformance.py.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo
from pca_git import GitRepo

from pca_core import ArtifactsConfig, ArtifactSyncError, ConfigError, RepoSpec
from pca_core.testing import build_plugin
from tests.support.gitserver import CuttingProxy, GitDaemon, HttpGitServer, Upstream, git

USER, PASSWORD = "deployer", "s3cr@t:pa/ss w0rd"
FILES = {"index.php": "<?php echo 'v1';", "lib/util.php": "<?php // util", "README": "readme\n"}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def daemon(base):
    with GitDaemon(base) as running:
        yield running


@pytest.fixture(scope="module")
def http(base):
    with HttpGitServer(base, USER, PASSWORD) as running:
        yield running


@pytest.fixture
def upstream(base, request) -> Upstream:
    return Upstream(base, f"{request.node.name[:40]}-{time.monotonic_ns()}.git", FILES)


def plugin(**options) -> GitRepo:
    return build_plugin(GitRepo, ArtifactsConfig(options=options), key="artifacts")


def spec_for(url: str, path: Path, **fields) -> RepoSpec:
    return RepoSpec(url=url, path=str(path), tenant_id="-1234", **fields)


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``directory`` with its size and modification time."""
    return {str(p.relative_to(directory)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if not p.is_dir()}


def head_of(path: Path) -> str:
    with Repo(str(path)) as repo:
        return repo.head().decode()


# --- Clone and fetch ------------------------------------------------------------------------------------


def test_first_checkout_follows_the_remotes_default_branch_and_stores_no_credentials(daemon, upstream,
                                                                                   tmp_path):
    upstream.commit({"trunk.txt": "trunk"}, branch="trunk")
    upstream.set_default_branch("trunk")
    app = tmp_path / "app"
    result = plugin().sync(spec_for(daemon.url(upstream.name), app))
    assert result.changed and result.previous is None
    assert result.revision == upstream.revision("trunk")
    assert (app / "trunk.txt").read_text() == "trunk"
    assert (app / "lib" / "util.php").read_text() == FILES["lib/util.php"]
    with Repo(str(app)) as repo:
        assert repo.refs.follow(b"HEAD")[0][-1] == b"refs/heads/trunk"
        assert repo.get_config().get((b"remote", b"origin"), b"url") == daemon.url(upstream.name).encode()
    assert not list(tmp_path.glob(".app.pca-clone-*"))


def test_a_configured_branch_is_followed(daemon, upstream, tmp_path):
    feature = upstream.commit({"feature.txt": "f"}, branch="feature")
    app = tmp_path / "app"
    result = plugin().sync(spec_for(daemon.url(upstream.name), app, branch="feature"))
    assert result.revision == feature and (app / "feature.txt").exists()


def test_changing_the_configured_branch_switches_the_checkout(daemon, upstream, tmp_path):
    feature = upstream.commit({"feature.txt": "f", "README": None}, branch="feature")
    app = tmp_path / "app"
    repo = plugin()
    repo.sync(spec_for(daemon.url(upstream.name), app))
    result = repo.sync(spec_for(daemon.url(upstream.name), app, branch="feature"))
    assert (result.changed, result.revision) == (True, feature)
    assert (app / "feature.txt").exists() and not (app / "README").exists()
    with Repo(str(app)) as checkout:
        assert checkout.refs.follow(b"HEAD")[0][-1] == b"refs/heads/feature"


def test_a_sync_with_nothing_new_transfers_and_writes_nothing(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    repo = plugin()
    spec = spec_for(daemon.url(upstream.name), app)
    first = repo.sync(spec)
    before = snapshot(app)
    result = repo.sync(spec)
    assert not result.changed
    assert result.revision == result.previous == first.revision
    assert snapshot(app) == before  # no pack, no loose object, no ref, no index written


def test_a_pull_moves_head_and_removes_the_directories_it_empties(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    repo = plugin()
    spec = spec_for(daemon.url(upstream.name), app)
    repo.sync(spec)
    new = upstream.commit({"lib/util.php": None})
    assert repo.sync(spec).changed
    assert not (app / "lib").exists()
    assert head_of(app) == new


def test_the_first_checkout_merges_into_an_existing_directory(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    (app / "do_not_delete").mkdir(parents=True)
    (app / "do_not_delete" / "do_not_delete").write_text("keep me")
    (app / "index.php").write_text("old page")
    plugin().sync(spec_for(daemon.url(upstream.name), app))
    assert (app / "do_not_delete" / "do_not_delete").read_text() == "keep me"
    assert (app / "index.php").read_text() == FILES["index.php"]


def test_a_failed_first_fetch_leaves_the_directory_as_it_was(daemon, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "existing").write_text("x")
    before = snapshot(app)
    with pytest.raises(ArtifactSyncError, match="fetch from git://"):
        plugin().sync(spec_for(daemon.url("missing.git"), app))
    assert snapshot(app) == before
    assert not (app / ".git").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]


def test_a_server_disappearing_mid_fetch_leaves_the_checkout_as_it_was(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    repo = plugin()
    spec = spec_for(daemon.url(upstream.name), app)
    first = repo.sync(spec)
    upstream.commit({f"big/{i}.txt": os.urandom(3000).hex() for i in range(40)})
    proxy = CuttingProxy(daemon.port, limit=20_000)
    try:
        before = snapshot(app)
        with pytest.raises(ArtifactSyncError, match="fetch from git://"):
            repo.sync(spec_for(proxy.url(upstream.name), app))
        assert proxy.cuts >= 1
        assert snapshot(app) == before
        assert head_of(app) == first.revision
        assert not (app / "big").exists()
    finally:
        proxy.close()
    assert repo.sync(spec).changed and (app / "big" / "0.txt").exists()


def test_a_first_clone_cut_mid_fetch_leaves_nothing_behind(daemon, upstream, tmp_path):
    upstream.commit({f"big/{i}.txt": os.urandom(3000).hex() for i in range(40)})
    proxy = CuttingProxy(daemon.port, limit=20_000)
    try:
        with pytest.raises(ArtifactSyncError):
            plugin().sync(spec_for(proxy.url(upstream.name), tmp_path / "app"))
    finally:
        proxy.close()
    assert list(tmp_path.iterdir()) == []


def test_a_silent_server_times_out(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) but never answers
    try:
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ArtifactSyncError, match="timed out"):
            plugin(timeout=0.5).sync(spec_for(f"git://127.0.0.1:{port}/app.git", tmp_path / "app"))
        assert time.monotonic() - started < 10
    finally:
        listener.close()


def test_repositories_at_different_paths_sync_concurrently(daemon, base, tmp_path):
    upstreams = [Upstream(base, f"concurrent-{i}-{time.monotonic_ns()}.git", {"n.txt": str(i)})
                 for i in range(8)]
    repo = plugin()
    errors: list[BaseException] = []

    def sync(i: int) -> None:
        try:
            repo.sync(spec_for(daemon.url(upstreams[i].name), tmp_path / str(i)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sync, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert [(tmp_path / str(i) / "n.txt").read_text() for i in range(8)] == [str(i) for i in range(8)]


def test_a_file_url_and_a_local_path_are_served_in_process(upstream, tmp_path):
    assert plugin().sync(spec_for(f"file://{upstream.bare}", tmp_path / "a")).changed
    assert plugin().sync(spec_for(str(upstream.bare), tmp_path / "b")).changed
    assert (tmp_path / "b" / "index.php").exists()


def test_ssh_remotes_get_dulwichs_ssh_client_with_the_key_file():
    from dulwich.client import SSHGitClient
    from pca_git._remote import Remote

    client, path = Remote("ssh://git@git.example.org/srv/app.git", None, None, timeout=5,
                          ssh_key_file="/etc/pca/id_ed25519").client()
    assert isinstance(client, SSHGitClient) and path == "/srv/app.git"
    assert client.key_filename == "/etc/pca/id_ed25519"


def test_unsupported_schemes_are_refused(tmp_path):
    with pytest.raises(ArtifactSyncError, match="unsupported remote"):
        plugin().sync(spec_for("ftp://example.org/app.git", tmp_path / "app"))


@pytest.mark.parametrize("atomic", [False, True], ids=["in place", "atomic"])
def test_a_revision_with_a_dot_git_path_is_refused_before_anything_is_written(daemon, base, tmp_path, atomic):
    bare = base / f"evil-{time.monotonic_ns()}.git"
    with Repo.init_bare(str(bare), mkdir=True, default_branch=b"main") as repo:
        hook = Blob.from_string(b"#!/bin/sh\necho owned\n")
        hooks = Tree()
        hooks.add(b"post-checkout", 0o100755, hook.id)
        dot_git = Tree()
        dot_git.add(b"hooks", stat.S_IFDIR, hooks.id)
        page = Blob.from_string(b"page")
        root = Tree()
        root.add(b".git", stat.S_IFDIR, dot_git.id)
        root.add(b"index.php", 0o100644, page.id)
        commit = Commit()
        commit.tree, commit.author = root.id, b"x <x@x>"
        commit.committer, commit.message = b"x <x@x>", b"evil"
        commit.author_time = commit.commit_time = 0
        commit.author_timezone = commit.commit_timezone = 0
        for obj in (hook, hooks, dot_git, page, root, commit):
            repo.object_store.add_object(obj)
        repo.refs[b"refs/heads/main"] = commit.id
    app = tmp_path / "app"
    with pytest.raises(ArtifactSyncError, match=r"must not be written \(\.git/hooks/post-checkout\)"):
        plugin(atomic=atomic).sync(spec_for(daemon.url(bare.name), app))
    assert not (app / "index.php").exists()
    assert not list(tmp_path.rglob("post-checkout"))


# --- Local changes --------------------------------------------------------------------------------------


def test_without_auto_commit_a_pull_never_overwrites_a_local_change(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    repo = plugin()
    spec = spec_for(daemon.url(upstream.name), app)
    first = repo.sync(spec)
    (app / "index.php").write_text("hand-edited on the instance")
    upstream.commit({"index.php": "<?php echo 'v2';"})
    with pytest.raises(ArtifactSyncError, match=r"would overwrite local changes to index\.php"):
        repo.sync(spec)
    assert (app / "index.php").read_text() == "hand-edited on the instance"
    assert head_of(app) == first.revision
    # A remote change elsewhere is pulled, and the local change still kept, once the conflict is gone.
    (app / "index.php").write_text(FILES["index.php"])
    upstream.commit({"README": "new readme\n"})
    (app / "lib" / "util.php").write_text("local util")
    result = repo.sync(spec)
    assert result.changed and (app / "README").read_text() == "new readme\n"
    assert (app / "lib" / "util.php").read_text() == "local util"


def test_an_untracked_file_in_the_way_of_a_new_one_is_not_overwritten(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    repo = plugin()
    spec = spec_for(daemon.url(upstream.name), app)
    repo.sync(spec)
    (app / "config.php").write_text("made on the instance")
    upstream.commit({"config.php": "from the repository"})
    with pytest.raises(ArtifactSyncError, match=r"config\.php"):
        repo.sync(spec)
    assert (app / "config.php").read_text() == "made on the instance"


def test_a_rewritten_remote_history_is_followed_when_there_are_no_local_commits(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    repo = plugin()
    spec = spec_for(daemon.url(upstream.name), app)
    repo.sync(spec)
    rewritten = upstream.rewrite({"only.txt": "fresh start"})
    result = repo.sync(spec)
    assert result.changed and result.revision == rewritten
    assert (app / "only.txt").exists() and not (app / "index.php").exists()


def test_local_commits_are_never_dropped(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    repo = plugin()
    spec = spec_for(daemon.url(upstream.name), app)
    repo.sync(spec)
    (app / "mine.txt").write_text("mine")
    git("add", "mine.txt", cwd=app)  # someone committed by hand on the instance
    git("commit", "--quiet", "-m", "local", cwd=app)
    mine = head_of(app)
    assert not repo.sync(spec).changed  # the remote has nothing new: we are ahead
    upstream.commit({"README": "remote change\n"})
    with pytest.raises(ArtifactSyncError, match="local commits"):
        repo.sync(spec)
    assert head_of(app) == mine and (app / "mine.txt").exists()


# --- Commit and push ------------------------------------------------------------------------------------


def test_commit_and_push_commits_every_local_change_and_pushes_it(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    repo = plugin(author="Agent Smith <agent@example.org>")
    spec = spec_for(daemon.url(upstream.name), app)
    repo.sync(spec)
    assert repo.commit_and_push(spec, "nothing") is None
    (app / "index.php").write_text("edited")
    (app / "README").unlink()
    (app / "uploads").mkdir()
    (app / "uploads" / "a.txt").write_text("uploaded")
    (app / ".gitignore").write_text("*.log\n")
    (app / "debug.log").write_text("ignored")
    revision = repo.commit_and_push(spec, "tenant [-1234]'s artifacts committed")
    assert revision is not None and upstream.revision() == revision == head_of(app)
    assert upstream.show("index.php") == "edited"
    assert upstream.show("uploads/a.txt") == "uploaded"
    assert "README" not in git("ls-tree", "--name-only", "main", cwd=upstream.bare).split()
    assert "debug.log" not in git("ls-tree", "--name-only", "main", cwd=upstream.bare).split()
    log = git("log", "-1", "--format=%an <%ae>|%s", "main", cwd=upstream.bare)
    assert log == "Agent Smith <agent@example.org>|tenant [-1234]'s artifacts committed"
    assert repo.commit_and_push(spec, "again") is None
    assert not repo.sync(spec).changed


def test_a_failed_push_rolls_the_commit_back_and_keeps_the_changes(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    repo = plugin()
    spec = spec_for(daemon.url(upstream.name), app)
    first = repo.sync(spec)
    index_before = (app / ".git" / "index").read_bytes()
    (app / "index.php").write_text("edited on the instance")
    remote = upstream.commit({"README": "moved on\n"})  # the remote moved: the push is not a fast-forward
    with pytest.raises(ArtifactSyncError, match="rolled back"):
        repo.commit_and_push(spec, "local")
    assert head_of(app) == first.revision
    assert (app / ".git" / "index").read_bytes() == index_before
    assert (app / "index.php").read_text() == "edited on the instance"
    assert upstream.revision() == remote
    # Pulled (no conflict: another file), then committed on top: the push goes through.
    assert repo.sync(spec).changed
    revision = repo.commit_and_push(spec, "local")
    assert upstream.revision() == revision and upstream.show("index.php") == "edited on the instance"


def test_an_unreachable_remote_rolls_the_commit_back(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    repo = plugin(timeout=2)
    first = repo.sync(spec_for(daemon.url(upstream.name), app))
    (app / "new.txt").write_text("new")
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ArtifactSyncError, match=r"push to .* failed.*rolled back"):
        repo.commit_and_push(spec_for(f"git://127.0.0.1:{port}/{upstream.name}", app), "local")
    assert head_of(app) == first.revision and (app / "new.txt").exists()


# --- HTTP with credentials ------------------------------------------------------------------------------


def test_credentials_inside_the_url_are_taken_out_of_it(http, upstream, tmp_path):
    from urllib.parse import quote

    url = http.url(upstream.name).replace("http://", f"http://{USER}:{quote(PASSWORD, safe='')}@")
    app = tmp_path / "app"
    assert plugin().sync(spec_for(url, app)).changed
    config = (app / ".git" / "config").read_text()
    assert http.url(upstream.name) in config and "@" not in config


# --- Atomic mode ----------------------------------------------------------------------------------------


def test_atomic_mode_switches_a_link_and_keeps_the_previous_revisions(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    repo = plugin(atomic=True, keep_revisions=1)
    spec = spec_for(daemon.url(upstream.name), app)
    first = repo.sync(spec)
    assert app.is_symlink() and os.readlink(app) == f".app.pca/{first.revision}"
    assert (app / "index.php").read_text() == FILES["index.php"]
    assert not repo.sync(spec).changed
    second = upstream.commit({"index.php": "v2"})
    seen: list[str] = []
    stop = threading.Event()

    def reader() -> None:  # a consumer reading through the link while it is switched
        while not stop.is_set():
            seen.append((app / "index.php").read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = repo.sync(spec)
    finally:
        stop.set()
        thread.join()
    assert (result.changed, result.previous, result.revision) == (True, first.revision, second)
    assert set(seen) <= {FILES["index.php"], "v2"}
    third = upstream.commit({"index.php": "v3"})
    repo.sync(spec)
    revisions = sorted(p.name for p in (tmp_path / ".app.pca").iterdir() if len(p.name) == 40)
    assert revisions == sorted([second, third])  # the current one and one previous
    assert repo.current_revision(spec) == third
    with pytest.raises(ArtifactSyncError, match="atomic mode"):
        repo.commit_and_push(spec, "no")
    repo.remove(spec)
    assert not os.path.lexists(app) and not (tmp_path / ".app.pca").exists()


def test_atomic_mode_refuses_to_replace_a_real_directory(daemon, upstream, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "precious").write_text("x")
    with pytest.raises(ArtifactSyncError, match="not a link made by pca"):
        plugin(atomic=True).sync(spec_for(daemon.url(upstream.name), app))
    assert (app / "precious").exists()


# --- Options --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"keep_revisions": -1}, "keep_revisions"),
    ({"timeout": 0}, "timeout"),
    ({"author": "no email"}, "author"),
    ({"depth": 1}, "unknown key"),
])
def test_options_are_validated(options, message):
    with pytest.raises(ConfigError, match=message):
        build_plugin(GitRepo, ArtifactsConfig(options=options), key="artifacts", source="agent.toml")
