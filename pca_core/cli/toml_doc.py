"""A configuration written out as commented native TOML: every section and key, with one line of help.

A key whose value differs from its default is written; any other key is a comment holding its default (or
an example, for a key unset by default), so that removing the ``#`` is all it takes to change it. A secret
written as a value gets a comment suggesting a ``${VAR}`` or ``${file:/path}`` reference instead.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable, Collection, Mapping
from typing import Any

import msgspec
import tomli_w

from pca_core.api.plugin import PluginOptions
from pca_core.api.secrets import Secret, is_secret_key
from pca_core.api.settings import PluginChoice, PublisherConfig
from pca_core.cli.key_help import KEYS, PAYLOAD, SECTIONS
from pca_core.config.schema import Config

OptionsOf = Callable[[str, str], "type[PluginOptions] | None"]
"""(section key, plugin name) -> the plugin's options type, or None when the plugin cannot be loaded."""

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_WIDTH = 110
_LIST_SECTIONS = ("publishers", "event_handlers")


def render(config: Config, *, active: Collection[str] = (), options_of: OptionsOf | None = None,
           examples: bool = True, payload_note: str | None = None,
           secret_variable: Callable[[str, str], str] | None = None) -> tuple[list[str], list[str]]:
    """``config`` as commented TOML, every section present.

    Args:
        config: the configuration to write.
        active: dotted keys written as values even when they hold their default.
        options_of: finds a plugin's options type, to list its options with their defaults.
        examples: write a commented example entry for ``publishers`` and ``event_handlers`` when the
            configuration has none.
        payload_note: a comment for the ``[payload]`` table, after its help.
        secret_variable: (dotted key, plugin name) -> the environment variable suggested for a secret.

    Returns:
        The lines, and the dotted keys of the secrets written as values.
    """
    writer = _Writer(set(active), options_of or (lambda _key, _name: None),
                     secret_variable or _default_variable)
    for field in msgspec.structs.fields(Config):
        value = getattr(config, field.name)
        if field.name in _LIST_SECTIONS:
            writer.entries(field.name, value, examples=examples)
        elif field.name == "payload":
            writer.payload(value, payload_note)
        else:
            writer.table(field.name, value, type(value)(), section=field.name)
    return writer.lines, writer.secrets


def value_text(value: Any) -> str:
    """``value`` written as a TOML value; ``${`` in a string is escaped as ``$${``, which stands for it."""
    if isinstance(value, Secret):
        value = value.reveal()
    if isinstance(value, str):
        return tomli_w.dumps({"v": value.replace("${", "$${")})[4:-1]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{key_text(str(k))} = {value_text(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, msgspec.Struct):
        return value_text(msgspec.to_builtins(value, enc_hook=_reveal))
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def key_text(key: str) -> str:
    """``key`` as a TOML key: bare when it can be, quoted otherwise."""
    return key if _BARE_KEY.match(key) else tomli_w.dumps({"v": key})[4:-1]


def _reveal(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    raise NotImplementedError


def _default_variable(key: str, plugin: str) -> str:
    """``PCA_<PLUGIN>_<NAME>`` (the entry's index after the plugin from the second entry of a list on).

    It has no ``__``, so it is never read as a ``PCA_<SECTION>__<KEY>`` override.
    """
    entry = re.match(r"^\w+\[(\d+)\]", key)
    index = entry[1] if entry and entry[1] != "0" else ""
    name = "_".join(part for part in ("PCA", plugin, index, key.rpartition(".")[2]) if part)
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", name)).upper()


def _struct_type(annotation: Any) -> type[msgspec.Struct] | None:
    """The Struct type of a field annotated ``S`` or ``S | None``; None for other fields."""
    candidates = getattr(annotation, "__args__", (annotation,))
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            return candidate
    return None


def _attribute_help(cls: type) -> dict[str, str]:
    """The ``Attributes:`` section of a Google-style class docstring: {name: its text, on one line}."""
    helps: dict[str, str] = {}
    doc = inspect.cleandoc(cls.__doc__ or "")
    section = re.search(r"^Attributes:\n((?:[ \t]+.*\n?|\n)*)", doc, re.MULTILINE)
    if section is None:
        return helps
    name = None
    for line in section[1].splitlines():
        entry = re.match(r"^ {4}(\w+)(?: \([^)]*\))?: (.*)$", line)
        if entry:
            name = entry[1]
            helps[name] = entry[2].strip()
        elif name is not None and line.strip():
            helps[name] += " " + line.strip()
    return {name: text.replace("``", "") for name, text in helps.items()}


def _field_default(field: msgspec.structs.FieldInfo) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return field.default
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return msgspec.NODEFAULT


class _Writer:
    def __init__(self, active: set[str], options_of: OptionsOf, variable: Callable[[str, str], str]) -> None:
        self.lines: list[str] = []
        self.secrets: list[str] = []
        self.active = active
        self.options_of = options_of
        self.variable = variable

    def help(self, text: str | None) -> None:
        if text:
            self.lines += [f"# {line}" for line in textwrap.wrap(text, _WIDTH - 2, break_on_hyphens=False)]

    def header(self, name: str, help_key: str, *, array: bool = False, commented: bool = False) -> None:
        if self.lines:
            self.lines.append("")
        self.help(SECTIONS.get(help_key))
        brackets = f"[[{name}]]" if array else f"[{name}]"
        self.lines.append(f"# {brackets}" if commented else brackets)

    def key(self, name: str, value: Any, default: Any, *, key: str, help_key: str, plugin: str = "",
            commented: bool = False, text: str | None = None, placeholder: bool = False) -> None:
        """One key: its help, then its value, or its default (an example when unset) as a comment.

        ``placeholder`` writes ``# name = ...`` for a key unset by default that has no example.
        """
        own_text, example = KEYS.get(help_key, (None, None))
        self.help(text or own_text)
        written = not commented and (key in self.active or value != default) and value is not None
        if written:
            line = f"{key_text(name)} = {value_text(value)}"
            if isinstance(value, Secret) or (isinstance(value, str) and value and is_secret_key(name)):
                variable = self.variable(key, plugin)
                secret_file = variable.removeprefix("PCA_").lower().replace("_", "-")
                line += f'  # a secret: better "${{{variable}}}" or "${{file:/etc/pca/{secret_file}}}"'
                self.secrets.append(key)
            self.lines.append(line)
            return
        shown = value if commented and value is not None else default
        if shown is None or shown is msgspec.NODEFAULT:
            if example is None and is_secret_key(name):
                example = f'"${{{self.variable(key, plugin)}}}"'
            if example is not None or placeholder:
                self.lines.append(f"# {key_text(name)} = {example or '...'}")
            return
        self.lines.append(f"# {key_text(name)} = {value_text(shown)}")

    def table(self, name: str, value: msgspec.Struct | None, default: msgspec.Struct | None, *, section: str,
              struct: type[msgspec.Struct] | None = None, array: bool = False, plugin: str = "",
              index: int | None = None, commented: bool = False) -> None:
        """A table: its plain keys, then its sub-tables (nested sections and ``options``).

        A nested table that is unset, or holds nothing but defaults, has its header commented too.
        """
        struct = struct or type(value if value is not None else default)
        plugin = plugin or getattr(value, "plugin", "")
        help_prefix = re.sub(r"\[\d+\]", "", name)
        prefix = name if index is None else f"{name}[{index}]"
        if value is None:  # an optional section that is unset: every key commented
            commented = True
        nested_table = "." in name
        header_commented = commented or (nested_table and value == (default or struct()) and not any(
            key.startswith(f"{prefix}.") for key in self.active))
        self.header(name, section, array=array, commented=header_commented)
        later: list[Callable[[], None]] = []
        for field in msgspec.structs.fields(struct):
            key = f"{prefix}.{field.name}"
            help_key = f"{help_prefix}.{field.name}"
            own = getattr(value, field.name) if value is not None else None
            fallback = getattr(default, field.name) if default is not None else _field_default(field)
            nested = _struct_type(field.type)
            if nested is not None:
                later.append(lambda key=key, own=own, fallback=fallback, help_key=help_key, nested=nested:
                             self.table(key, own, fallback, section=help_key, struct=nested,
                                        commented=commented))
            elif field.name == "options":
                chosen = getattr(value, "plugin", None) or getattr(default, "plugin", "")
                later.append(lambda key=key, own=own, help_key=help_key, chosen=chosen:
                             self.options(key, own or {}, help_key, name, chosen, commented=commented,
                                          table=f"{name}.options"))
            else:
                self.key(field.name, own, fallback, key=key, help_key=help_key, plugin=plugin,
                         commented=commented)
        for write in later:
            write()

    def options(self, name: str, values: Mapping[str, Any], help_key: str, section: str, plugin: str, *,
                commented: bool, table: str) -> None:
        """A plugin's ``options``: the values given, then the plugin's other options with their defaults."""
        options_type = self.options_of(section, plugin)
        fields = list(msgspec.structs.fields(options_type)) if options_type is not None else []
        known = {field.name for field in fields}
        helps = _attribute_help(options_type) if options_type is not None else {}
        self.header(table, help_key, commented=commented or not values)
        for field in fields:
            default = _field_default(field)
            self.key(field.name, values.get(field.name), None if default is msgspec.NODEFAULT else default,
                     key=f"{name}.{field.name}", help_key="", plugin=plugin, commented=commented,
                     text=helps.get(field.name), placeholder=True)
        for option, value in values.items():
            if option not in known:
                self.key(option, value, None, key=f"{name}.{option}", help_key="", plugin=plugin,
                         commented=commented)

    def entries(self, section: str, entries: tuple[PluginChoice, ...], *, examples: bool) -> None:
        """The ``[[publishers]]`` or ``[[event_handlers]]`` tables, or a commented example of one."""
        struct = PublisherConfig if section == "publishers" else PluginChoice
        for index, entry in enumerate(entries):
            self.table(section, entry, None, section=section, struct=struct, array=True, plugin=entry.plugin,
                       index=index)
        if not entries and examples:
            example: PluginChoice = (
                PublisherConfig(plugin="file", options={"path": "/var/log/pca/records.jsonl"})
                if section == "publishers" else PluginChoice(plugin="my-handler"))
            self.table(section, example, None, section=section, struct=struct, array=True,
                       plugin=example.plugin, commented=True)
        elif not entries:
            self.header(section, section, array=True, commented=True)

    def payload(self, values: Mapping[str, str], note: str | None) -> None:
        self.header("payload", "payload")
        self.help(note)
        for name, value in values.items():
            self.help(PAYLOAD.get(name))
            self.key(name, value, None, key=f"payload.{name}", help_key="", plugin="")
