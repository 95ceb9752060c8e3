"""Discovery through entry points, with separate distributions registered on a temporary path.

Each case runs ``pca`` in a subprocess whose PYTHONPATH holds the extra distributions, as an installed
third-party plugin would be found.
"""

import json

import pytest

from pca_core.api.errors import PluginNotFound
from pca_core.builtin.file import FileLogPublisher
from pca_core.builtin.memory import MemoryTransport
from pca_core.runtime import discovery
from tests.support.configs import PAYLOAD_TOML
from tests.support.dists import MISSING_PUBLISHER, run_pca

GOOD_TRANSPORT = """
    from pca_core import Capability, Transport

    class Good(Transport):
        api_version = (2, 0)
        capabilities = frozenset({Capability.WILDCARDS})
        def connect(self, timeout=None): pass
        def publish(self, topic, payload, *, qos=1, timeout=None): pass
        def subscribe(self, pattern, handler, *, qos=1): pass
        def unsubscribe(self, subscription): pass
        def close(self, timeout=None): pass
"""


def test_builtins_are_found_through_pca_cores_own_entry_points():
    assert discovery.load_plugin(discovery.TRANSPORTS, "memory") is MemoryTransport
    assert discovery.load_plugin(discovery.LOG_PUBLISHERS, "file") is FileLogPublisher
    assert discovery.distribution_of(discovery.TRANSPORTS, "memory")[0] == "pca-core"


def test_unknown_shipped_name_gives_the_install_hint(monkeypatch):
    name, dist = MISSING_PUBLISHER  # every shipped plugin is installed here: one more that is not
    monkeypatch.setitem(discovery.SHIPPED, (discovery.LOG_PUBLISHERS, name), dist)
    with pytest.raises(PluginNotFound) as info:
        discovery.load_plugin(discovery.LOG_PUBLISHERS, name)
    message = str(info.value)
    assert f"pip install {dist}" in message
    assert "installed: file" in message
    assert info.value.plugin == name


def test_unknown_other_name_names_the_group():
    with pytest.raises(PluginNotFound, match=r"pca.log_publishers"):
        discovery.load_plugin(discovery.LOG_PUBLISHERS, "nosuch")


def write_config(tmp_path, transport):
    config = tmp_path / "agent.toml"
    config.write_text(f'[transport]\nplugin = "{transport}"\n' + PAYLOAD_TOML)
    return config


def test_a_plugin_from_a_separate_distribution_is_discovered_and_loads(site, tmp_path):
    dist = site.dist("pca-good", {"pca.transports": {"good": "good_transport:Good"}}, version="2.3")
    dist.add_module("good_transport", GOOD_TRANSPORT)
    dist.install()
    result = run_pca("plugins", "--json", env=site.env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["plugins"]
    good = next(r for r in rows if r["name"] == "good")
    assert good == {"group": "pca.transports", "name": "good", "distribution": "pca-good", "version": "2.3",
                    "loads": True, "error": None}
    assert {("pca.transports", "memory"), ("pca.log_publishers", "file")} <= {
        (r["group"], r["name"]) for r in rows}


def test_an_unselected_broken_plugin_is_never_imported(site, tmp_path):
    dist = site.dist("pca-broken", {"pca.transports": {"broken": "broken_transport:Broken"},
                                    "pca.log_publishers": {"broken": "broken_transport:Broken"}})
    dist.add_module("broken_transport", """
        import os
        open(os.environ["IMPORT_MARKER"], "w").close()
        raise ImportError("No module named 'libbroken'")
    """)
    dist.install()
    marker = tmp_path / "imported"
    env = {**site.env, "IMPORT_MARKER": str(marker)}
    result = run_pca("config", "check", "--config", str(write_config(tmp_path, "memory")), env=env)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()

    result = run_pca("config", "check", "--config", str(write_config(tmp_path, "broken")), env=env)
    assert marker.exists()
    assert result.returncode == 1
    assert "transport plugin 'broken' (pca-broken 1.0) failed to load" in result.stderr
    assert "No module named 'libbroken'" in result.stderr
    assert "Traceback" not in result.stderr


def test_plugins_lists_a_broken_plugin_with_its_error(site):
    dist = site.dist("pca-broken", {"pca.log_publishers": {"broken": "broken_sink:Sink"}}, version="0.9")
    dist.add_module("broken_sink", "raise ImportError(\"No module named 'fluent'\")\n")
    dist.install()
    result = run_pca("plugins", env=site.env)
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if " broken " in line)
    assert "pca-broken 0.9" in line
    assert "error:" in line and "No module named 'fluent'" in line


def test_a_plugin_that_does_not_state_its_api_version_is_refused_as_written_for_another(site, tmp_path):
    # A plugin for pca-core 0.x (plugin API 1.0) never had to state it.
    dist = site.dist("pca-old", {"pca.transports": {"old": "old_transport:Old"}}, version="0.3")
    dist.add_module("old_transport", GOOD_TRANSPORT.replace("class Good", "class Old").replace(
        "        api_version = (2, 0)\n", ""))
    dist.install()
    result = run_pca("config", "check", "--config", str(write_config(tmp_path, "old")), env=site.env)
    assert result.returncode == 1
    assert ("transport plugin 'old' (pca-old 0.3) does not state the plugin API it was written for; a plugin "
            "written for plugin API 2.0 says api_version = (2, 0)") in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("version", "advice"), [
    ((1, 0), "install a release of the plugin written for it"),
    ((3, 0), "install a newer pca-core"),
    ((2, 9), "install a newer pca-core"),
])
def test_a_plugin_for_another_api_version_is_refused_with_both_versions(site, tmp_path, version, advice):
    dist = site.dist("pca-other", {"pca.transports": {"other": "other_transport:Other"}}, version="5.0")
    dist.add_module("other_transport", GOOD_TRANSPORT.replace("class Good", "class Other") +
                    f"        api_version = {version!r}\n")
    dist.install()
    result = run_pca("config", "check", "--config", str(write_config(tmp_path, "other")), env=site.env)
    assert result.returncode == 1
    assert (f"transport plugin 'other' (pca-other 5.0) was written for plugin API {version[0]}.{version[1]}; "
            f"this pca-core provides plugin API 2.0: {advice}") in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("declared", ['{"tsl"}', '{"qos1"}', "{Capability.PUSH}"])
def test_a_capability_that_is_not_a_member_of_the_contracts_set_is_refused(site, tmp_path, declared):
    # A typo, a plain string, or another contract's capability: each fails at load, never skips tests.
    dist = site.dist("pca-typo", {"pca.transports": {"typo": "typo_transport:Typo"}})
    dist.add_module("typo_transport", GOOD_TRANSPORT.replace("class Good", "class Typo").replace(
        "frozenset({Capability.WILDCARDS})", f"frozenset({declared})"))
    dist.install()
    result = run_pca("config", "check", "--config", str(write_config(tmp_path, "typo")), env=site.env)
    assert result.returncode == 1
    assert "declares capabilities that are not pca_core.api.Capability members of its kind" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_object_that_is_not_a_plugin_of_the_group_is_refused(site, tmp_path):
    dist = site.dist("pca-odd", {"pca.transports": {"odd": "odd_transport:Odd"}})
    dist.add_module("odd_transport", "class Odd:\n    pass\n")
    dist.install()
    result = run_pca("config", "check", "--config", str(write_config(tmp_path, "odd")), env=site.env)
    assert result.returncode == 1
    assert "is not a pca_core.api.transport.Transport subclass" in result.stderr


def test_a_name_registered_twice_is_an_error_naming_it(site, tmp_path):
    for name, target in (("pca-one", "Good"), ("pca-two", "Other")):
        site.dist(name, {"pca.transports": {"twin": f"good_transport:{target}"}}).install()
    site.dist("pca-one", {}).add_module("good_transport", GOOD_TRANSPORT + "\n    Other = Good\n")
    result = run_pca("config", "check", "--config", str(write_config(tmp_path, "twin")), env=site.env)
    assert result.returncode == 1
    assert "'twin' is registered more than once" in result.stderr
