"""examples/container/Containerfile, checked without a container engine.

The instructions are read from the file: what it copies exists in the repository, the plugins it installs
are distributions under plugins/, the image runs as a user that is not root, stops with SIGTERM and runs
``pca run`` on the mounted configuration. The slow test then does what the build stage does, on this
machine: the same files copied to a scratch root, the same ``pip install`` into a fresh virtual
environment; and runs the image's ENTRYPOINT and HEALTHCHECK commands from it against an agent.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import venv
from pathlib import Path

import pytest

from tests.support.configs import PAYLOAD_TOML
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "examples" / "container" / "Containerfile"
CONFIG = "/etc/pca/agent.toml"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comment lines dropped as engines do."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            name, _, arguments = whole.partition(" ")
            result.append((name.upper(), arguments.strip()))
    assert not pending, "the file ends inside a continued line"
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, each starting with its FROM."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            result.append([])
        assert result, f"{instruction[0]} before the first FROM"
        result[-1].append(instruction)
    return result


def arguments_of(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def copies(stage: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not ``--from`` another stage)."""
    result = []
    for arguments in arguments_of(stage, "COPY"):
        words = shlex.split(arguments)
        if any(word.startswith("--from") for word in words):
            continue
        words = [word for word in words if not word.startswith("--")]
        result.append((words[:-1], words[-1]))
    return result


def default_plugins(stage: list[tuple[str, str]]) -> list[str]:
    for arguments in arguments_of(stage, "ARG"):
        name, _, value = shlex.split(arguments)[0].partition("=")
        if name == "PLUGINS":
            return value.split()
    raise AssertionError("no ARG PLUGINS in the build stage")


def exec_form(arguments: str) -> list[str]:
    form = json.loads(arguments)
    assert isinstance(form, list) and all(isinstance(word, str) for word in form), arguments
    return form


def plugin_rows(listing: str) -> list[dict]:
    """The plugins ``pca plugins --json`` lists: one document (a list, or an object with ``plugins``)."""
    try:
        document = json.loads(listing)
    except json.JSONDecodeError:  # one object per line
        return [json.loads(line) for line in listing.splitlines() if line.strip()]
    return document["plugins"] if isinstance(document, dict) else document


@pytest.fixture(scope="module")
def image() -> list[list[tuple[str, str]]]:
    return stages(CONTAINERFILE.read_text())


def test_everything_it_copies_from_the_repository_exists(image):
    copied = [source for stage in image for sources, _ in copies(stage) for source in sources]
    assert copied, "nothing is copied from the build context"
    missing = [source for source in copied if not (ROOT / source).exists()]
    assert not missing, missing
    # What the distributions are built from: pca-core's project files, its package and the plugins.
    assert {"setup.cfg", "pyproject.toml", "pca_core", "plugins"} <= set(copied)


def test_the_plugins_it_installs_are_distributions_of_this_repository(image):
    plugins = default_plugins(image[0])
    assert plugins
    for plugin in plugins:
        setup = ROOT / "plugins" / plugin / "setup.cfg"
        assert setup.is_file(), f"{plugin}: no distribution at {setup.parent.relative_to(ROOT)}"
        assert re.search(r"^name = pca-", setup.read_text(), re.MULTILINE), setup


def test_the_image_runs_as_a_user_that_is_not_root(image):
    final = image[-1]
    users = arguments_of(final, "USER")
    assert users, "the final stage sets no USER: the agent would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    runs = " ".join(arguments_of(final, "RUN"))
    created = re.search(r"useradd\b[^&;]*--uid (\d+)[^&;]* (\w+)\s*(?:&&|$)", runs)
    assert created is not None, "the final stage creates no user"
    assert user in created.groups(), (user, created.groups())


def test_it_runs_the_agent_on_the_mounted_configuration_and_stops_it_with_sigterm(image):
    final = image[-1]
    (entrypoint,) = [exec_form(arguments) for arguments in arguments_of(final, "ENTRYPOINT")]
    start = entrypoint.index("pca")
    assert entrypoint[start:] == ["pca", "run", "--config", CONFIG], entrypoint
    if start:  # an init in front of the agent: it must be installed, and hand the signals on
        assert entrypoint[:start] == ["tini", "--"], entrypoint
        assert re.search(r"apt-get install [^&]*\btini\b", " ".join(arguments_of(final, "RUN")))
    assert arguments_of(final, "STOPSIGNAL") == ["SIGTERM"]
    paths = [arguments for arguments in arguments_of(final, "ENV") if arguments.startswith("PATH=")]
    assert paths and "/opt/pca/bin" in paths[-1].split("=", 1)[1].split(":"), paths


def healthcheck_command(image) -> list[str]:
    (healthcheck,) = arguments_of(image[-1], "HEALTHCHECK")
    return exec_form(healthcheck.split("CMD", 1)[1].strip())


def test_the_health_check_asks_the_agent_of_that_configuration(image):
    assert healthcheck_command(image) == ["pca", "status", "--config", CONFIG]


@pytest.mark.slow
def test_the_build_stage_installs_the_plugins_and_the_image_commands_work(image, tmp_path):
    build, final = image[0], image[-1]
    # The build stage's COPY instructions, into a scratch root.
    root = tmp_path / "root"
    for sources, destination in copies(build):
        target = root / destination.lstrip("/")
        for source in sources:
            place = target / Path(source).name if destination.endswith("/") else target
            place.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, place)
            else:
                shutil.copy(ROOT / source, place)
    # Its RUN: one pip install of /src and /src/plugins/<each of PLUGINS> into a new /opt/pca.
    plugins = default_plugins(build)
    assert "/opt/pca/bin/pip install" in " ".join(arguments_of(build, "RUN"))
    prefix = root / "opt" / "pca"
    venv.create(prefix, with_pip=True)
    src = root / "src"
    subprocess.run([prefix / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", str(src),
                    *(str(src / "plugins" / plugin) for plugin in plugins)],
                   check=True, capture_output=True, text=True, timeout=600)

    listing = subprocess.run([prefix / "bin" / "pca", "plugins", "--json"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    rows = plugin_rows(listing)
    for plugin in plugins:
        distribution = plugin.replace("_", "-")
        mine = [row for row in rows if row["distribution"] == distribution]
        assert mine and all(row["loads"] for row in mine), (plugin, rows)

    # The image's commands, with the environment's PATH as ENV sets it and the configuration elsewhere.
    state = Path(tempfile.mkdtemp(prefix="pca-img-", dir="/tmp"))  # a Unix socket path must stay short
    try:
        config = tmp_path / "agent.toml"
        config.write_text(f'[agent]\nstate_dir = "{state}"\n\n[transport]\nplugin = "memory"\n{PAYLOAD_TOML}')
        env = {**os.environ, "PATH": f"{prefix / 'bin'}:{os.environ['PATH']}"}

        def command(words: list[str]) -> list[str]:
            return [str(config) if word == CONFIG else word for word in words]

        def healthy() -> bool:
            return subprocess.run(command(healthcheck_command(image)), env=env, capture_output=True,
                                  timeout=30).returncode == 0

        (entrypoint,) = [exec_form(arguments) for arguments in arguments_of(final, "ENTRYPOINT")]
        agent_argv = command(entrypoint[entrypoint.index("pca"):])
        with open(tmp_path / "agent.log", "wb") as log:
            agent = subprocess.Popen(agent_argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert wait_until(healthy, timeout=60, interval=0.2), (tmp_path / "agent.log").read_text()
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(60) == 0, (tmp_path / "agent.log").read_text()
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)
        assert not healthy()  # the check fails once the agent is gone
    finally:
        shutil.rmtree(state, ignore_errors=True)
