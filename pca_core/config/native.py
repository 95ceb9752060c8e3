"""The native configuration: one TOML file, with environment overrides, validated into a :class:`Config`.

Environment variables named ``PCA_<SECTION>__<KEY>`` override file values
(``PCA_TRANSPORT__URLS=h1:1883,h2:1883``, ``PCA_TRANSPORT__TLS__CA_FILE=...``,
``PCA_PAYLOAD__MEMBER_ID=...``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from pca_core.api.errors import ConfigError, ConfigErrors
from pca_core.config.schema import Config
from pca_core.config.validate import convert, is_sequence
from pca_core.stratos.payload import identity_from_params, parse_launch_params

_ENV_NAME = re.compile(r"^PCA_([A-Z][A-Z0-9_]*?)__(\w+)$")


def env_overrides(tree: dict[str, Any],
                  environ: Mapping[str, str]) -> tuple[dict[str, str], list[ConfigError]]:
    """Applies ``PCA_<SECTION>__<KEY>`` variables to ``tree`` in place.

    Sections and keys are the TOML names in upper case; ``__`` separates nesting levels. Payload keys keep
    their case (``PCA_PAYLOAD__MEMBER_ID``). A value for a list is comma-separated.

    Returns:
        {dotted key: the variable that set it}, and an error for each variable naming a section that does
        not exist or one that cannot be set from the environment.
    """
    origins: dict[str, str] = {}
    errors: list[ConfigError] = []
    sections = {f.name for f in msgspec.structs.fields(Config)}
    for name in sorted(environ):
        match = _ENV_NAME.match(name)
        if not match:
            continue
        section = match[1].lower()
        if section not in sections:
            errors.append(ConfigError(f"environment variable {name}", section,
                                      f"unknown section (known: {', '.join(sorted(sections))})"))
            continue
        if section in ("publishers", "event_handlers"):
            errors.append(ConfigError(f"environment variable {name}", section,
                                      "lists of plugins cannot be set from the environment; use the file"))
            continue
        rest = match[2] if section == "payload" else match[2].lower()
        path = [section, *rest.split("__")]
        value: Any = environ[name]
        if is_sequence(Config, path):
            value = [item.strip() for item in value.split(",") if item.strip()]
        node = tree
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
        origins[".".join(path)] = f"environment variable {name}"
    return origins, errors


def origin_of(key: str, source: str, environ: Mapping[str, str]) -> str:
    """Where the value at dotted ``key`` came from: the ``PCA_`` variable that set it, else ``source``.

    A key inside a list (``urls[1]``) comes from the variable that set the whole list.
    """
    parts = re.sub(r"\[\d+\]", "", key).split(".")
    for end in range(len(parts), 1, -1):
        section, rest = parts[0], parts[1:end]
        names = [section.upper(), *(r if section == "payload" else r.upper() for r in rest)]
        name = "PCA_" + "__".join(names)
        if name in environ:
            return f"environment variable {name}"
    return source


def load_toml(path: Path) -> dict[str, Any]:
    """Reads a TOML file into plain data.

    Raises:
        ConfigError: the file cannot be read or is not valid TOML.
    """
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "(syntax)", f"not valid TOML: {exc}") from None


def read_payload_file(path: Path) -> dict[str, str]:
    """Reads a ``launch-params`` payload file.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        return parse_launch_params(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot be read: {exc.strerror or exc}") from None


def build(tree: dict[str, Any], *, source: str, environ: Mapping[str, str],
          origins: Mapping[str, str] | None = None, payload_source: str | None = None,
          errors: list[ConfigError] | None = None, check_identity: bool = True) -> Config:
    """Applies environment overrides to ``tree``, then validates it into a :class:`Config`.

    Args:
        tree: the configuration as plain data, in the native layout.
        source: the file it came from.
        environ: the environment whose ``PCA_`` variables override the file.
        origins: dotted keys whose value came from elsewhere (a legacy file), mapped to where.
        payload_source: where the payload came from, when not from ``source``.
        errors: problems found before (by a legacy reader), reported together with these.
        check_identity: whether to validate the payload's identity keys (a legacy reader did already).

    Raises:
        ConfigErrors: every problem, each naming the file or variable, the key and what was expected.
    """
    errors = list(errors or ())
    all_origins = dict(origins or {})
    env_origins, env_errors = env_overrides(tree, environ)
    all_origins.update(env_origins)
    errors += env_errors
    payload = tree.setdefault("payload", {})  # none at all: every mandatory key is reported missing
    if isinstance(payload, dict):
        # TOML may give numbers or booleans; payload parameters are strings, as in launch-params.
        tree["payload"] = payload = {k: str(v).lower() if isinstance(v, bool) else str(v)
                                     for k, v in payload.items()}
        lookup_origins = {key.removeprefix("payload."): value for key, value in all_origins.items()
                          if key.startswith("payload.")}
        try:
            if check_identity:
                identity_from_params(payload, payload_source or source)
        except ConfigErrors as exc:
            errors += [ConfigError(lookup_origins.get(e.key, e.source), e.key, e.expected)
                       for e in exc.errors]
    config: Config | None = None
    try:
        config = convert(tree, Config, source=source, origins=all_origins)
    except ConfigErrors as exc:
        errors += exc.errors
    if config is not None:
        errors += [ConfigError(origin_of(f"{section}.{issue.key}", source, environ), f"{section}.{issue.key}",
                               issue.expected)
                   for section, issues in (("agent", config.agent.issues()), ("logs", config.logs.issues()))
                   for issue in issues]
    if errors or config is None:
        raise ConfigErrors(errors)
    return config


def load_native(path: Path, payload_path: Path | None, environ: Mapping[str, str]) -> Config:
    """Loads a native TOML file, with the payload file it or the command line names.

    Raises:
        ConfigErrors: naming the file, the key and what was expected, for every problem.
    """
    tree = load_toml(path)
    file_payload = tree.get("payload", {})
    if not isinstance(file_payload, dict):
        raise ConfigError(str(path), "payload", "expected a table of KEY = \"value\" launch parameters")
    agent = tree.get("agent", {})
    payload_file = payload_path or (agent.get("payload_file") if isinstance(agent, dict) else None)
    payload_source = str(path)
    if payload_file:
        payload_file = (path.parent / payload_file) if not Path(payload_file).is_absolute() else payload_file
        tree["payload"] = {**file_payload, **read_payload_file(Path(payload_file))}
        payload_source = str(payload_file)
    return build(tree, source=str(path), environ=environ, payload_source=payload_source)
