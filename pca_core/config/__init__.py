"""The agent's configuration: one file, native TOML or a legacy Stratos ``agent.conf``, validated whole.

:func:`load` reads either form (a legacy ``agent.conf`` together with its ``launch-params`` payload) into
a :class:`Config`; every problem is reported at once, each naming its file, key and what was expected.
:func:`to_data` gives the effective configuration back as plain data with every secret masked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from pca_core.api.secrets import MASK, Secret, mask_data
from pca_core.config.native import build, load_native
from pca_core.config.schema import (
    AgentConfig,
    ArtifactsConfig,
    Config,
    HealthConfig,
    LogsConfig,
    PluginChoice,
    PublisherConfig,
    TlsConfig,
    TransportConfig,
)
from pca_core.config.validate import convert

__all__ = [
    "AgentConfig",
    "ArtifactsConfig",
    "Config",
    "HealthConfig",
    "LogsConfig",
    "PluginChoice",
    "PublisherConfig",
    "TlsConfig",
    "TransportConfig",
    "build",
    "convert",
    "load",
    "to_data",
]


def load(path: str | Path, payload_path: str | Path | None = None,
         environ: Mapping[str, str] | None = None) -> tuple[Config, list[str]]:
    """Loads a configuration file of either form; returns it with the warnings to show.

    A file whose name ends in ``.toml`` is native; anything else is read as a legacy ``agent.conf``. A
    native file's ``${VAR}`` and ``${file:/path}`` references are resolved from ``environ`` and the files
    they name; a legacy file's values are taken literally. ``PCA_<SECTION>__<KEY>`` variables of
    ``environ`` override values of either.

    Raises:
        ConfigError: the file cannot be read or parsed.
        ConfigErrors: every invalid or missing value, each naming the file, the key and what was expected.
    """
    path = Path(path)
    environ = os.environ if environ is None else environ
    payload = None if payload_path is None else Path(payload_path)
    if path.suffix != ".toml":
        from pca_core.config.legacy import load_legacy

        return load_legacy(path, payload, environ)
    return load_native(path, payload, environ), []


def to_data(config: Config) -> dict[str, Any]:
    """The configuration as plain data, secrets masked, unset values and empty tables left out."""

    def enc(value: Any) -> Any:
        if isinstance(value, Secret):
            return MASK
        raise NotImplementedError

    data = msgspec.to_builtins(config, enc_hook=enc)
    return _drop_none(mask_data(data))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None and v != {}}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
