"""The artifact flow end to end: the agent's lifecycle with a real git daemon and HTTP git server.

Also the three promises of the git artifact repository that a test must be able to break: no child
process (no ``git``) ever, no credential anywhere it could leak, no path outside the application path.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import msgspec
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pca_core.agent import control
from pca_core.agent.lifecycle import Phase
from pca_core.builtin import memory
from pca_core.config import ArtifactsConfig
from pca_core.stratos import events
from tests.e2e.test_lifecycle import HandDriven, Harness
from tests.support.gitserver import GitDaemon, HttpGitServer, Upstream
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
KEY = "tvnw63ufg9gh5111"
USER, PASSWORD = "deployer", "Unl1kely+S3cret@Pa:ss/wd%"
FILES = {"index.php": "<?php echo 'v1';", "lib/util.php": "<?php // util"}


def encrypt(text: str, key: str = KEY) -> str:
    """What Stratos puts in repoPassword: base64 of AES-128-ECB with PKCS5 padding."""
    padder = padding.PKCS7(128).padder()
    data = padder.update(text.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encode()), modes.ECB()).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode()


class ArtifactHarness(Harness):
    """The lifecycle harness with a repository in the payload and artifact settings of the test's choice."""

    def __init__(self, home: Path, bus: str, artifacts: dict, **payload: str) -> None:
        super().__init__(home, bus, CARTRIDGE_KEY=KEY, **payload)
        self.artifacts = artifacts

    def config(self):
        return msgspec.structs.replace(super().config(), artifacts=ArtifactsConfig(**self.artifacts))


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def daemon(served):
    with GitDaemon(served) as running:
        yield running


@pytest.fixture(scope="module")
def http(served):
    with HttpGitServer(served, USER, PASSWORD) as running:
        yield running


@pytest.fixture
def upstream(served, request) -> Upstream:
    return Upstream(served, f"{request.node.name[:40]}-{time.monotonic_ns()}.git", FILES)


@pytest.fixture
def home(request) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pca-", dir="/tmp"))  # short: a Unix socket lives in it
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ran(h: Harness, event: str) -> dict[str, str]:
    """What the recording extension saw, or {} while it is still writing it."""
    try:
        return h.ran(event)
    except ValueError:
        return {}


def listing(directory: Path) -> list[str] | None:
    """The names in ``directory``, None while it does not exist (it is being replaced)."""
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return None


def make_harness(home: Path, request, url: str, **artifacts) -> ArtifactHarness:
    return ArtifactHarness(home, f"artifacts-{request.node.name}", artifacts, REPO_URL=url)


def stop(h: ArtifactHarness) -> None:
    h.shutdown()
    h.application.close()
    memory.set_available(h.bus, True)


# --- The lifecycle --------------------------------------------------------------------------------------


def test_activation_follows_the_first_checkout_and_updates_follow(daemon, upstream, home, request):
    url = daemon.url(upstream.name)
    h = make_harness(home, request, url, auto_checkout=True, update_interval=0.2, initial_backup=True)
    app = home / "app"
    (app / "do_not_delete").mkdir(parents=True)
    (app / "do_not_delete" / "do_not_delete").write_text("shipped with the image")
    plane = HandDriven(h, ["Created", "Initialized"])
    try:
        agent = h.start()  # the git plugin is loaded through its entry point: REPO_URL is set
        assert type(h.runtime.artifact_repo).__name__ == "GitRepo"
        assert wait_until(lambda: agent.phase is Phase.WAITING_FOR_ARTIFACTS)
        assert wait_until(lambda: plane.received == ["InstanceStartedEvent"])
        assert not (app / "index.php").exists()
        plane.send(events.ArtifactUpdatedEvent(cluster_id="other.domain", repo_url=url, tenant_id="-1234"))
        plane.send(events.ArtifactUpdatedEvent(cluster_id="php.domain", repo_url=url, tenant_id="-1234",
                                               status="Updated"))
        assert wait_until(lambda: agent.phase is Phase.ACTIVE, timeout=20)
        assert wait_until(lambda: plane.received == ["InstanceStartedEvent", "InstanceActivatedEvent"])
        assert (app / "index.php").read_text() == FILES["index.php"]
        assert (app / "do_not_delete" / "do_not_delete").exists()
        assert (home / "app_backup" / "do_not_delete" / "do_not_delete").exists()
        first = h.ran("ArtifactUpdatedEvent")
        assert first["STRATOS_ARTIFACT_UPDATED_REVISION"] == upstream.revision()
        assert first["STRATOS_ARTIFACT_UPDATED_SCHEDULER"] == "false"
        assert first["STRATOS_ARTIFACT_UPDATED_REPO_URL"] == url
        assert first["STRATOS_ARTIFACT_UPDATED_CLUSTER_ID"] == "php.domain"
        assert control.call(h.socket_path, "status")["artifact_revision"] == upstream.revision()

        new = upstream.commit({"index.php": "<?php echo 'v2';"})  # picked up by the periodic task
        scheduled = {"STRATOS_ARTIFACT_UPDATED_REVISION": new, "STRATOS_ARTIFACT_UPDATED_SCHEDULER": "true"}
        assert wait_until(lambda: scheduled.items() <= ran(h, "ArtifactUpdatedEvent").items(), timeout=20)
        assert (app / "index.php").read_text() == "<?php echo 'v2';"

        plane.send(events.ApplicationSignUpRemovedEvent(application_id="app-1", tenant_id=-1234))
        assert wait_until(lambda: listing(app) == ["do_not_delete"])  # the backup, back in place
        assert not (home / "app_backup").exists()
    finally:
        plane.transport.close()
        stop(h)


def test_a_repository_that_appears_late_is_cloned_by_a_retry_then_activates(served, daemon, home, request,
                                                                              caplog):
    name = f"late-{time.monotonic_ns()}.git"
    url = daemon.url(name)
    h = make_harness(home, request, url, clone_retries=5, clone_interval=0.2)
    plane = HandDriven(h, ["Created", "Initialized"])
    try:
        agent = h.start()
        assert wait_until(lambda: agent.phase is Phase.WAITING_FOR_ARTIFACTS)
        plane.send(events.ArtifactUpdatedEvent(cluster_id="php.domain", repo_url=url, tenant_id="-1234"))
        assert wait_until(lambda: "Retrying git clone attempt 1 failed" in caplog.text)
        assert agent.phase is Phase.WAITING_FOR_ARTIFACTS
        Upstream(served, name, FILES)
        assert wait_until(lambda: agent.phase is Phase.ACTIVE, timeout=20)
        assert (home / "app" / "index.php").exists()
    finally:
        plane.transport.close()
        stop(h)


# --- No child process, ever -----------------------------------------------------------------------------


def run_flow(tmp_path: Path, args: dict) -> tuple[dict, Path]:
    """Runs tests/support/artifact_flow.py with a PATH whose only git, ssh and gpg record their calls."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    marker = tmp_path / "programs-run.txt"
    for program in ("git", "ssh", "gpg", "git-upload-pack", "git-receive-pack"):
        fake = fake_bin / program
        fake.write_text(f'#!/bin/sh\necho "{program} $*" >> {marker}\nexit 1\n')
        fake.chmod(0o755)
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"work": str(tmp_path / "work"), "key": KEY, **args}))
    env = {"PATH": str(fake_bin), "HOME": str(tmp_path), "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.support.artifact_flow", str(args_file)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), marker


@pytest.mark.parametrize("control_run", [False, True], ids=["flow", "control: the flow then runs git"])
def test_the_whole_flow_runs_without_git_and_starts_no_child_process(daemon, http, upstream, tmp_path,
                                                                     control_run):
    report, marker = run_flow(tmp_path, {
        "git_url": daemon.url(upstream.name), "http_url": http.url(upstream.name), "user": USER,
        "password": encrypt(PASSWORD), "control": control_run})
    assert report["cloned"] == ["1", "2", "3"]
    assert report["pulled"] and report["scheduled_updates"] >= 1 and report["removed"]
    assert "pushed.txt" in upstream.show_tree()
    if control_run:  # the detection works: this run did start git, and both witnesses saw it
        assert any("subprocess.Popen" in spawn for spawn in report["spawns"])
        assert marker.read_text().startswith("git --version")
    else:
        assert report["spawns"] == []
        assert not marker.exists()
        assert report["children"] in ([], None)


# --- No credential anywhere -----------------------------------------------------------------------------


def secret_forms(*passwords: str) -> list[bytes]:
    forms = []
    for password in passwords:
        forms += [password.encode(), quote(password, safe="").encode(),
                  base64.b64encode(f"{USER}:{password}".encode()),
                  base64.b64encode(f"{USER}:{password}".encode()).rstrip(b"=")]
    return forms


def test_the_repository_password_never_reaches_a_log_line_a_file_or_an_extension(http, upstream, home,
                                                                                  request, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # every logger: pca, dulwich, urllib3
    url = http.url(upstream.name)
    wrong = "Wr0ng+Pa55word@x"
    # Auto-commit only: the remote is contacted by the events and by pushes, so the failures counted
    # below are the events' own.
    h = make_harness(home, request, url, auto_commit=True, update_interval=0.2)
    plane = HandDriven(h, ["Created", "Initialized"])
    try:
        agent = h.start()
        assert wait_until(lambda: agent.phase is Phase.WAITING_FOR_ARTIFACTS)
        plane.send(events.ArtifactUpdatedEvent(
            cluster_id="php.domain", repo_url=url, tenant_id="-1234", repo_user_name=USER,
            repo_password=encrypt(PASSWORD)))
        assert wait_until(lambda: agent.phase is Phase.ACTIVE, timeout=20)
        (home / "app" / "uploaded.txt").write_text("pushed with the credentials")
        assert wait_until(lambda: "uploaded.txt" in upstream.show_tree(), timeout=20)
        # Wrong credentials, and credentials inside the URL: failures and messages must not show them.
        inside = url.replace("http://", f"http://{USER}:{quote(wrong, safe='')}@")
        plane.send(events.ArtifactUpdatedEvent(cluster_id="php.domain", repo_url=inside, tenant_id="-1234"))
        assert wait_until(lambda: caplog.text.count("credentials were refused") == 1, timeout=20)
        plane.send(events.ArtifactUpdatedEvent(
            cluster_id="php.domain", repo_url=url, tenant_id="-1234", repo_user_name=USER,
            repo_password=encrypt(wrong)))
        assert wait_until(lambda: caplog.text.count("credentials were refused") == 2, timeout=20)
    finally:
        plane.transport.close()
        stop(h)
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert expected in http.authorizations  # the password was used: the checks below can fail
    forms = secret_forms(PASSWORD, wrong)
    lines = [record.getMessage() + (record.exc_text or "") for record in caplog.records]
    out, err = capfd.readouterr()
    for text in [*lines, caplog.text, out, err]:
        for form in forms:
            assert form.decode() not in text
    files = [p for p in home.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.name == "config" and p.parent.name == ".git" for p in files)
    assert any(p.name == "ArtifactUpdatedEvent.env" for p in files)
    for path in files:
        data = path.read_bytes()
        for form in forms:
            assert form not in data, f"{form!r} found in {path}"
    # The extension gets the password as the event carried it: encrypted.
    assert h.ran("ArtifactUpdatedEvent")["STRATOS_ARTIFACT_UPDATED_REPO_PASSWORD"] == encrypt(PASSWORD)


# --- No path outside the application path ---------------------------------------------------------------


@pytest.mark.parametrize("escape", ["../../../../{name}", "1/../../../../../{name}",
                                    "-1234/../../../../{name}"])
def test_a_tenant_id_that_would_escape_the_application_path_is_refused(daemon, upstream, home, request,
                                                                        escape, caplog):
    url = daemon.url(upstream.name)
    outside = home.parent / f"escaped-{home.name}"  # where the tenant id points: <app>/repository/tenants/..
    tenant_id = escape.format(name=outside.name)
    h = make_harness(home, request, url)
    h.payload["MULTITENANT"] = "true"
    plane = HandDriven(h, ["Created", "Initialized"])
    try:
        agent = h.start()
        assert wait_until(lambda: agent.phase is Phase.WAITING_FOR_ARTIFACTS)
        plane.send(events.ArtifactUpdatedEvent(cluster_id="php.domain", repo_url=url, tenant_id=tenant_id))
        assert wait_until(lambda: "is not a number" in caplog.text)
        plane.send(events.ArtifactUpdatedEvent(cluster_id="php.domain", repo_url=url, tenant_id="5"))
        assert wait_until(lambda: agent.phase is Phase.ACTIVE, timeout=20)
    finally:
        plane.transport.close()
        stop(h)
        escaped = outside.exists()
        shutil.rmtree(outside, ignore_errors=True)
    assert not escaped
    assert os.listdir(home / "app" / "repository" / "tenants") == ["5"]
    assert (home / "app" / "repository" / "tenants" / "5" / "index.php").exists()


def test_a_relative_application_path_is_refused_with_the_original_message(daemon, upstream, home, request,
                                                                          caplog):
    url = daemon.url(upstream.name)
    h = make_harness(home, request, url)
    h.payload["APPLICATION_PATH"] = "relative/app"
    plane = HandDriven(h, ["Created", "Initialized"])
    try:
        agent = h.start()
        assert wait_until(lambda: agent.phase is Phase.WAITING_FOR_ARTIFACTS)
        plane.send(events.ArtifactUpdatedEvent(cluster_id="php.domain", repo_url=url, tenant_id="-1234"))
        assert wait_until(lambda: "Repository path cannot be accessed, or is invalid. Failed to process "
                                  "artifact updated event. [App Path] relative/app" in caplog.text)
        assert agent.phase is Phase.WAITING_FOR_ARTIFACTS
    finally:
        plane.transport.close()
        stop(h)
