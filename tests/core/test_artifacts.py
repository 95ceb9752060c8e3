"""The artifact flow: paths, decryption, retries, backups, the periodic task, removal; over a git daemon."""

from __future__ import annotations

import base64
import logging
import socket
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pca_git import GitRepo

from pca_core.agent.artifacts import (
    INVALID_PATH,
    ArtifactManager,
    ArtifactUpdate,
    decrypt_password,
    repo_path,
)
from pca_core.api.errors import ArtifactSyncError
from pca_core.api.secrets import Secret, split_credentials, without_password
from pca_core.config import build
from pca_core.runtime.scheduler import Scheduler
from pca_core.stratos.events import ArtifactUpdatedEvent
from tests.support.configs import PAYLOAD
from tests.support.gitserver import GitDaemon, Upstream
from tests.support.waiting import wait_until

KEY = "tvnw63ufg9gh5111"


def config(app_path: str | None = "/var/www", multitenant: bool = False, **artifacts):
    payload = {**PAYLOAD, "MULTITENANT": str(multitenant).lower(), "CARTRIDGE_KEY": KEY}
    tree = {"payload": payload, "artifacts": artifacts}
    if app_path is not None:
        tree["agent"] = {"application_path": app_path}
    return build(tree, source="test", environ={})


def encrypt(text: str, key: str = KEY) -> str:
    padder = padding.PKCS7(128).padder()
    data = padder.update(text.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encode()), modes.ECB()).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode()


# --- Decryption -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "ciphertext", "plain"), [
    ("tvnw63ufg9gh5111", "jP1lZ5xMlpLzu8MbY2Porg==", "plaintext"),  # PKCS5 padding (Stratos)
    ("PUjpXCLujDhYr5A6", "iF7qT+BKKPE3PGV1TeDsJA==", "iXSLhimFulqe"),  # zero padding (test data)
])
def test_the_two_stratos_vectors_decrypt(key, ciphertext, plain):
    assert decrypt_password(ciphertext, Secret(key)).reveal() == plain


def test_a_password_of_a_whole_block_and_special_characters_round_trips():
    for password in ("exactly16bytes!!", "p@ss:wörd/é", "x"):
        assert decrypt_password(encrypt(password), Secret(KEY)).reveal() == password


@pytest.mark.parametrize("ciphertext", ["not base64!", "YWJj", ""])
def test_a_malformed_password_is_an_error_that_shows_neither_it_nor_the_key(ciphertext):
    with pytest.raises(ArtifactSyncError) as caught:
        decrypt_password(ciphertext, Secret(KEY))
    assert KEY not in str(caught.value) and (not ciphertext or ciphertext not in str(caught.value))


@pytest.mark.parametrize(("url", "clean", "user", "password", "shown"), [
    ("https://u:p%40ss%3Aw@h:8443/x.git", "https://h:8443/x.git", "u", "p@ss:w", "https://u@h:8443/x.git"),
    ("https://u@h/x", "https://h/x", "u", None, "https://u@h/x"),
    ("http://:tok@h/x", "http://h/x", None, "tok", "http://h/x"),
    ("git://h/x", "git://h/x", None, None, "git://h/x"),
    ("/srv/git/x", "/srv/git/x", None, None, "/srv/git/x"),
    ("ssh://git@h/x", "ssh://git@h/x", None, None, "ssh://git@h/x"),
    ("git@h:x.git", "git@h:x.git", None, None, "git@h:x.git"),
])
def test_credentials_are_split_out_of_urls(url, clean, user, password, shown):
    assert split_credentials(url) == (clean, user, password)
    assert without_password(url) == shown


# --- Paths ----------------------------------------------------------------------------------------------


def test_single_and_multi_tenant_paths():
    assert repo_path(config(), "5") == "/var/www"
    multi = config(multitenant=True)
    assert repo_path(multi, "-1234") == "/var/www/repository/deployment/server"
    assert repo_path(multi, "5") == "/var/www/repository/tenants/5"
    assert repo_path(config("/var/www/", multitenant=True), "17") == "/var/www/repository/tenants/17"


@pytest.mark.parametrize("app_path", [None, "relative/path", "~/app"])
def test_a_missing_or_relative_application_path_gives_the_original_error(app_path):
    with pytest.raises(ArtifactSyncError) as caught:
        repo_path(config(app_path), "-1234")
    assert str(caught.value).startswith(f"{INVALID_PATH} Failed to process artifact updated event. "
                                        f"[App Path] {app_path}")


@pytest.mark.parametrize("tenant_id", ["../../etc", "5/../../..", "-1234/..", "..", "", None, "1e3", "٣",
                                       "-", "5 ", "/etc"])
def test_a_tenant_id_that_is_not_a_number_is_refused(tenant_id):
    with pytest.raises(ArtifactSyncError, match="is not a number"):
        repo_path(config(multitenant=True), tenant_id)


@pytest.mark.parametrize("paths", [
    {"tenant_repository_path": "/../../etc/"},
    {"super_tenant_repository_path": "/../.."},
    {"super_tenant_repository_path": "/"},
    {"super_tenant_repository_path": "/repository/../../www2"},
])
def test_a_configured_path_that_leaves_the_application_path_is_refused(paths):
    with pytest.raises(ArtifactSyncError, match="would leave the application path"):
        repo_path(config(multitenant=True, **paths), "-1234" if "super_tenant_repository_path" in paths
                  else "5")


def test_the_file_system_root_is_not_an_application_path():
    with pytest.raises(ArtifactSyncError, match="must not be the file system root"):
        repo_path(config("/"), "-1234")
    with pytest.raises(ArtifactSyncError, match="must not be the file system root"):
        repo_path(config("/var/.."), "-1234")


# --- The event ------------------------------------------------------------------------------------------


def manager(cfg, updates: list[ArtifactUpdate], scheduler: Scheduler) -> ArtifactManager:
    return ArtifactManager(cfg, GitRepo(cfg.artifacts), scheduler, post=lambda name, job: job(),
                           on_update=updates.append)


def event(url: str, **fields) -> ArtifactUpdatedEvent:
    return ArtifactUpdatedEvent(cluster_id=PAYLOAD["CLUSTER_ID"], repo_url=url, tenant_id="-1234", **fields)


def test_the_spec_holds_no_credentials_in_its_url_and_the_decrypted_password():
    cfg = config(branch="release")
    m = ArtifactManager(cfg, GitRepo(cfg.artifacts), Scheduler(), post=lambda n, j: j(), on_update=print)
    spec = m.spec_for(event("https://bob:old%40pw@git.example.org/app.git", repo_password=encrypt("n@w pw"),
                            repo_user_name="deployer"))
    assert spec.url == "https://git.example.org/app.git"
    assert (spec.username, spec.password.reveal(), spec.branch) == ("deployer", "n@w pw", "release")
    spec = m.spec_for(event("https://bob:old%40pw@git.example.org/app.git"))
    assert (spec.username, spec.password.reveal()) == ("bob", "old@pw")
    assert not m.wants(ArtifactUpdatedEvent(cluster_id="other.domain", repo_url="git://x/y"))
    assert not m.wants(ArtifactUpdatedEvent(repo_url="git://x/y"))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    with GitDaemon(base) as daemon:
        yield base, daemon


def new_upstream(served, files=None) -> tuple[Upstream, str]:
    base, daemon = served
    upstream = Upstream(base, f"app-{time.monotonic_ns()}.git", files or {"index.php": "v1"})
    return upstream, daemon.url(upstream.name)


def test_the_first_checkout_is_announced_and_later_events_sync(served, scheduler, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pca_core")
    upstream, url = new_upstream(served)
    updates: list[ArtifactUpdate] = []
    m = manager(config(str(tmp_path / "app")), updates, scheduler)
    m.handle(ArtifactUpdatedEvent(cluster_id="other.domain", repo_url=url))
    assert updates == [] and not m.known
    m.handle(event(url))
    (first,) = updates
    assert first.result.changed and first.result.revision == upstream.revision() == m.revision
    assert "Git clone executed: [tenant-id] -1234 [repo-url] " + url in caplog.text
    m.handle(event(url))  # announced again (as the original ran the extension on every event)
    assert len(updates) == 2 and not updates[1].result.changed


def test_a_failed_first_checkout_is_retried_until_the_repository_appears(served, scheduler, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pca_core")
    base, daemon = served
    name = f"late-{time.monotonic_ns()}.git"
    updates: list[ArtifactUpdate] = []
    m = manager(config(str(tmp_path / "app"), clone_retries=3, clone_interval=0.3), updates, scheduler)
    m.handle(event(daemon.url(name)))
    assert wait_until(lambda: "Retrying git clone attempt 1 failed" in caplog.text)
    Upstream(base, name, {"index.php": "late"})
    assert wait_until(lambda: len(updates) == 1, timeout=15)
    assert (tmp_path / "app" / "index.php").read_text() == "late"
    assert "All attempts failed" not in caplog.text


def test_clone_retries_give_up_after_the_configured_number(served, scheduler, tmp_path, caplog):
    _base, daemon = served
    updates: list[ArtifactUpdate] = []
    m = manager(config(str(tmp_path / "app"), clone_retries=2, clone_interval=0.05), updates, scheduler)
    m.handle(event(daemon.url("never.git")))
    assert wait_until(lambda: "All attempts failed while retrying git clone" in caplog.text)
    assert caplog.text.count("Retrying git clone attempt") == 2
    assert updates == [] and not (tmp_path / "app").exists()


def test_initial_backup_and_its_restore_on_signup_removal(served, scheduler, tmp_path):
    _upstream, url = new_upstream(served)
    app = tmp_path / "app"
    app.mkdir()
    (app / "original.html").write_text("shipped with the image")
    updates: list[ArtifactUpdate] = []
    m = manager(config(str(app), initial_backup=True), updates, scheduler)
    m.handle(event(url))
    backup = tmp_path / "app_backup"
    assert sorted(p.name for p in backup.iterdir()) == ["original.html"]
    assert (app / "index.php").exists() and (app / "original.html").exists()
    assert not m.remove_tenant("7")  # another tenant's signup: this single-tenant checkout is -1234's
    assert m.remove_tenant("-1234")
    assert sorted(p.name for p in app.iterdir()) == ["original.html"] and not backup.exists()
    assert not m.remove_tenant("-1234")  # nothing left: a no-op, not a crash


def test_a_failed_backup_fails_the_checkout_which_is_retried(served, scheduler, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pca_core")
    _upstream, url = new_upstream(served)
    app = tmp_path / "app"
    app.mkdir()
    (app / "original.html").write_text("shipped with the image")
    blocker = socket.socket(socket.AF_UNIX)
    blocker.bind(str(app / "s"))  # a socket cannot be copied (even by root): the backup fails
    updates: list[ArtifactUpdate] = []
    m = manager(config(str(app), initial_backup=True, clone_retries=50, clone_interval=0.1), updates,
                scheduler)
    m.handle(event(url))
    assert wait_until(lambda: "Retrying git clone attempt 1 failed" in caplog.text)
    assert f"initial backup of {app} to {app}_backup failed" in caplog.text
    assert "Traceback" not in caplog.text
    blocker.close()
    (app / "s").unlink()
    assert wait_until(lambda: len(updates) == 1, timeout=15)
    assert sorted(p.name for p in (tmp_path / "app_backup").iterdir()) == ["original.html"]
    assert (app / "index.php").exists()


def test_removing_an_unknown_tenant_does_nothing(served, scheduler, tmp_path):
    app = tmp_path / "app"
    (app / "repository" / "tenants" / "9").mkdir(parents=True)
    (app / "repository" / "tenants" / "9" / "keep").write_text("not a checkout")
    m = manager(config(str(app), multitenant=True), [], scheduler)
    assert not m.remove_tenant("9") and not m.remove_tenant("../..")
    assert (app / "repository" / "tenants" / "9" / "keep").exists()


def test_multi_tenant_repositories_go_to_their_own_paths(served, scheduler, tmp_path):
    _upstream, url = new_upstream(served)
    _other, other_url = new_upstream(served, {"tenant.txt": "5"})
    app = tmp_path / "app"
    updates: list[ArtifactUpdate] = []
    m = manager(config(str(app), multitenant=True), updates, scheduler)
    m.handle(event(url))
    m.handle(ArtifactUpdatedEvent(cluster_id=PAYLOAD["CLUSTER_ID"], repo_url=other_url, tenant_id="5"))
    assert (app / "repository" / "deployment" / "server" / "index.php").exists()
    assert (app / "repository" / "tenants" / "5" / "tenant.txt").read_text() == "5"
    assert m.remove_tenant("5")
    assert not (app / "repository" / "tenants" / "5").exists()
    assert (app / "repository" / "deployment" / "server" / "index.php").exists()


def test_the_periodic_task_pulls_and_announces_scheduled_updates(served, scheduler, tmp_path):
    upstream, url = new_upstream(served)
    updates: list[ArtifactUpdate] = []
    m = manager(config(str(tmp_path / "app"), auto_checkout=True, update_interval=0.1), updates, scheduler)
    m.handle(event(url))
    new = upstream.commit({"index.php": "v2"})
    assert wait_until(lambda: any(u.scheduled and u.result.revision == new for u in updates))
    assert (tmp_path / "app" / "index.php").read_text() == "v2"
    assert [u.scheduled for u in updates].count(True) == 1  # only syncs that changed something
    m.close()


def test_the_periodic_task_commits_and_pushes_local_changes(served, scheduler, tmp_path):
    upstream, url = new_upstream(served)
    app = tmp_path / "app"
    m = manager(config(str(app), auto_commit=True, auto_checkout=True, update_interval=0.1), [], scheduler)
    m.handle(event(url))
    (app / "uploaded.txt").write_text("by the application")
    assert wait_until(lambda: "uploaded.txt" in upstream.show_tree())
    log = upstream.log()
    assert log.startswith(f"-1234 <author@example.org>|tenant [-1234]'s artifacts committed to local repo "
                          f"at {app}")
    m.close()


def test_a_tick_never_runs_beside_an_event_driven_sync_of_the_same_repository(served, scheduler, tmp_path):
    upstream, url = new_upstream(served)
    updates: list[ArtifactUpdate] = []
    m = manager(config(str(tmp_path / "app"), auto_checkout=True, update_interval=0.05), updates, scheduler)
    m.handle(event(url))
    (tracked,) = m._repos.values()
    task = tracked.task
    with tracked.lock:  # what an event-driven sync holds
        upstream.commit({"index.php": "v2"})
        runs = task.runs
        assert wait_until(lambda: task.runs >= runs + 3)
        assert not any(u.scheduled for u in updates)
    assert wait_until(lambda: any(u.scheduled for u in updates))
    m.close()


def test_no_task_without_auto_checkout_nor_auto_commit(served, scheduler, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pca_core")
    _upstream, url = new_upstream(served)
    m = manager(config(str(tmp_path / "app")), [], scheduler)
    m.handle(event(url))
    assert "ADC configuration: [auto-commit] False, [auto-checkout] False, [interval] 10.0" in caplog.text
    assert all(t.task is None for t in m._repos.values())


def test_sync_all_needs_a_known_repository_and_announces_changes(served, scheduler, tmp_path):
    upstream, url = new_upstream(served)
    updates: list[ArtifactUpdate] = []
    m = manager(config(str(tmp_path / "app")), updates, scheduler)
    with pytest.raises(ArtifactSyncError, match="no artifact repository is known yet"):
        m.sync_all()
    m.handle(event(url))
    m.sync_all()
    assert len(updates) == 1
    upstream.commit({"index.php": "v2"})
    m.sync_all()
    assert len(updates) == 2 and not updates[1].scheduled and updates[1].event is None


def test_new_credentials_in_a_later_event_replace_the_old_ones(served, scheduler, tmp_path):
    _upstream, url = new_upstream(served)
    m = manager(config(str(tmp_path / "app")), [], scheduler)
    m.handle(event(url, repo_user_name="old", repo_password=encrypt("old")))
    m.handle(event(url, repo_user_name="new", repo_password=encrypt("new")))
    (tracked,) = m._repos.values()
    assert (tracked.spec.username, tracked.spec.password.reveal()) == ("new", "new")


def test_the_branch_can_come_from_the_environment():
    cfg = build({"payload": {**PAYLOAD, "CARTRIDGE_KEY": KEY}}, source="test",
                environ={"PCA_ARTIFACTS__BRANCH": "release"})
    assert cfg.artifacts.branch == "release"


def test_spec_paths_are_what_the_manager_computes(tmp_path):
    cfg = config(str(tmp_path), multitenant=True)
    m = ArtifactManager(cfg, GitRepo(cfg.artifacts), Scheduler(), post=lambda n, j: j(), on_update=print)
    spec = m.spec_for(ArtifactUpdatedEvent(cluster_id="php.domain", repo_url="git://h/x", tenant_id="12"))
    assert Path(spec.path) == tmp_path / "repository" / "tenants" / "12"
