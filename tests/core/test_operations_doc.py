"""docs/operations.md against a running agent's /metrics: every metric and label value the page names
(its table and its alerting rules) is one the agent serves, and every metric the agent serves is on the
page, with every phase and drop reason it can report.
"""

import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.configs import PAYLOAD_TOML
from tests.support.ports import free_port
from tests.support.process import PcaProcess
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "operations.md"
SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? \S+$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict[str, dict[str, set[str]]]:
    """{metric or sample name: {label: values seen}} from an agent with a file publisher."""
    tmp = tmp_path_factory.mktemp("ops")
    state = Path(tempfile.mkdtemp(prefix="pca-ops-", dir="/tmp"))  # a Unix socket path must stay short
    port = free_port()
    config = tmp / "agent.toml"
    config.write_text(f'[agent]\nstate_dir = "{state}"\n\n[http]\nlisten = "127.0.0.1:{port}"\n\n'
                      f'[transport]\nplugin = "memory"\n\n[[publishers]]\nplugin = "file"\n'
                      f'options = {{ path = "{tmp / "records.jsonl"}" }}\n{PAYLOAD_TOML}')
    agent = PcaProcess("run", "--config", str(config))
    text: list[str] = []

    def scrape() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text.append(reply.read().decode())
            return True
        except (urllib.error.URLError, ConnectionError):
            return False

    try:
        assert wait_until(scrape, timeout=30, interval=0.05), agent.output
    finally:
        agent.proc.terminate()
        agent.finish()
        shutil.rmtree(state, ignore_errors=True)
    names: dict[str, dict[str, set[str]]] = {}
    for line in text[-1].splitlines():
        if line.startswith("# TYPE "):
            names.setdefault(line.split()[2], {})
        elif line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, line
            labels = names.setdefault(match[1], {})
            for label, value in LABEL.findall(match[2] or ""):
                labels.setdefault(label, set()).add(value)
    return names


def family(name: str, served: dict[str, dict[str, set[str]]]) -> dict[str, set[str]]:
    """The labels seen on ``name`` and on its samples (``_total``, ``_count``, ``_sum``)."""
    labels: dict[str, set[str]] = {}
    for other, seen in served.items():
        suffix = other[len(name) + 1:] if other.startswith(name + "_") else None
        if other == name or suffix in ("total", "count", "sum"):
            for label, values in seen.items():
                labels.setdefault(label, set()).update(values)
    return labels


def test_every_metric_the_page_names_is_served(served):
    # pca_core, pca_mqtt, ...: packages, not metrics
    packages = {package.name for parent in (ROOT, ROOT / "plugins") for package in parent.glob("pca_*")}
    named = set(re.findall(r"\bpca_[a-z0-9_]+", PAGE.read_text())) - packages
    assert named, "the page names no metric"
    unknown = sorted(name for name in named if name not in served)
    assert not unknown, f"named on the page, not served: {unknown}; served: {sorted(served)}"


def test_every_metric_served_is_on_the_page(served):
    page = PAGE.read_text()
    missing = sorted(name for name in served if f"`{name}" not in page  # a summary's samples: its name
                     and not (name.endswith(("_count", "_sum")) and f"`{name.rsplit('_', 1)[0]}" in page))
    assert not missing, missing


def test_every_label_matcher_on_the_page_matches_what_is_served(served):
    page = PAGE.read_text()
    checked = 0
    for name, selector in re.findall(r"\b(pca_[a-z0-9_]+)\{([^}]*)\}", page):
        labels = family(name, served)
        matchers = MATCHER.findall(selector)
        if not matchers:  # the table's `pca_info{version, plugin_api}`: label names
            names = {part.strip() for part in selector.split(",")}
            assert names <= set(labels), (name, names, labels)
            continue
        for label, operator, value in matchers:
            assert label in labels, (name, label, labels)
            values = labels[label]
            if operator in ("=", "!="):
                assert value in values, (name, label, value, values)
            else:
                assert any(re.fullmatch(value, seen) for seen in values), (name, label, value, values)
                for alternative in value.split("|"):
                    if re.fullmatch(r"\w+", alternative):
                        assert alternative in values, (name, label, alternative, values)
            checked += 1
    assert checked >= 3, "the page's alerting rules select by phase, reason and result"


@pytest.mark.parametrize("label", ["phase", "reason", "result"])
def test_every_value_of_a_label_is_explained_on_the_page(served, label):
    page = PAGE.read_text()
    values = {value for labels in served.values() for value in labels.get(label, ())}
    assert values, f"no metric has a {label} label"
    missing = sorted(value for value in values if f"`{value}`" not in page)
    assert not missing, missing
