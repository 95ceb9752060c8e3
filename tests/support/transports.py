"""A fixture body that builds transports of one plugin for a test and closes them all at its end."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pca_core.api import Transport, TransportConfig
from pca_core.testing import build_plugin

FAST = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.2}
"""Reconnect delays that keep tests short (the default schedule starts at 2 s)."""


def transports(cls: type[Transport], plugin: str) -> Iterator[Callable[..., Transport]]:
    """Yields ``make(*urls, **settings)``: an unconnected ``cls`` transport, closed at the end of the test.

    Settings go to the plugin's options or to TransportConfig by name; reconnects are fast unless
    overridden.
    """
    made: list[Transport] = []
    option_names = set(cls.Options.__struct_fields__)

    def make(*urls: str, **settings) -> Transport:
        settings = {**FAST, **settings}
        options = {k: v for k, v in settings.items() if k in option_names}
        config = TransportConfig(plugin=plugin, urls=urls, options=options,
                                 **{k: v for k, v in settings.items() if k not in option_names})
        transport = build_plugin(cls, config, key="transport")
        made.append(transport)
        return transport

    try:
        yield make
    finally:
        for transport in made:
            transport.close(5.0)
