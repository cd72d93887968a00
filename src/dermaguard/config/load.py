"""Load and validate the configuration: one YAML file → a frozen :class:`Config`.

A user's mistake is reported as a :class:`ConfigError` listing every problem at once, each
naming the key path, the bad value and what is allowed, so a config is fixed in one edit rather
than one error per restart. The schema is in :mod:`dermaguard.config.schema`, the generic
validator in :mod:`dermaguard.config.validate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dermaguard.config import reference as config_reference
from dermaguard.config.schema import Config
from dermaguard.config.sections.hardware import PinsConfig
from dermaguard.config.sections.pressure import FilterSpec, ZonesConfig
from dermaguard.config.validate import parse_section

__all__ = [
    "EXAMPLE_CONFIG",
    "Config",
    "ConfigError",
    "FilterSpec",
    "PinsConfig",
    "ZonesConfig",
    "config_to_data",
    "default_config",
    "example_config_text",
    "load_config",
    "parse_config",
    "reference_rows",
    "simulation_config",
    "simulation_device_id",
]

#: The commented example configuration shipped as package data (every key at its default).
EXAMPLE_CONFIG = "dermaguard.example.yaml"


class ConfigError(Exception):
    """The configuration cannot be used; ``errors`` holds one message per problem."""

    def __init__(self, errors: list[str], source: str = "<config>") -> None:
        self.errors = list(errors)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {error}" for error in self.errors)


def default_config() -> Config:
    """The configuration with every default (what an empty file gives)."""
    return Config()


def parse_config(data: object, source: str = "<config>") -> Config:
    """Validate already-parsed YAML data; ``None`` (an empty file) means all defaults."""
    errors: list[str] = []
    config = parse_section(Config, data, "", errors)
    if config is None:
        raise ConfigError(errors or ["invalid configuration"], source)
    return config


def load_config(path: Path | str | None) -> Config:
    """Read, parse and validate the YAML file at ``path``; ``None`` gives the defaults."""
    if path is None:
        return default_config()
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(["file not found"], source) from None
    except IsADirectoryError:
        raise ConfigError(["is a directory, not a configuration file"], source) from None
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror or exc}"], source) from None
    try:
        data = yaml.load(raw, Loader=_UniqueKeyLoader)  # a SafeLoader: as safe as safe_load
    except yaml.reader.ReaderError as exc:  # bytes that are not text
        where = f" (byte {exc.position})" if exc.position is not None else ""
        raise ConfigError([f"is not a text file{where}: {exc.reason}"], source) from None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_syntax_message(exc)], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"cannot be read as YAML: {exc}"], source) from None
    except RecursionError:
        raise ConfigError(["nested too deeply to be a configuration file"], source) from None
    except (ValueError, OverflowError) as exc:
        # PyYAML's constructors raise plain errors for values it parses but cannot build: an
        # impossible date (2024-02-30) or an integer longer than Python converts (4300 digits).
        raise ConfigError([f"a value cannot be read: {_first_line(exc)}"], source) from None
    return parse_config(data, source)


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]


def config_to_data(config: Config) -> dict[str, Any]:
    """Plain data that :func:`parse_config` turns back into an equal config (for dumping)."""
    return config_reference.to_data(config)


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(key path, default, allowed values, doc) for every key, to generate the reference."""
    return config_reference.reference_rows(Config)


def example_config_text() -> str:
    """The commented example configuration, a starting point for a user's own file."""
    return resources.files("dermaguard").joinpath("data", EXAMPLE_CONFIG).read_text("utf-8")


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    syntax = isinstance(exc, yaml.scanner.ScannerError | yaml.parser.ParserError)
    kind = "YAML syntax error" if syntax else "YAML error"
    problem = exc.problem or "invalid YAML"
    context = f" ({exc.context})" if exc.context else ""
    return f"{where}{kind}: {problem}{context}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that rejects a repeated key instead of silently keeping the last.

    A duplicated ``over_n`` would otherwise make one of the two thresholds vanish unseen.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            first = seen.setdefault((key_node.tag, key_node.value), key_node)
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key_node.value!r} (first on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value PyYAML parses but cannot build (an impossible date such as 2024-02-30, an
        integer longer than Python converts) is an error at its line, not a bare ValueError."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            problem = f"{node.value!s:.40} cannot be read: {_first_line(exc)}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def with_overrides(config: Config, overrides: Mapping[str, Any], source: str) -> Config:
    """``config`` with ``overrides`` (nested mappings, as in a config file) laid over it.

    Used by simulation scenarios that need, say, a one-minute UV cycle; the result is
    validated like any config, and errors name ``source``.
    """

    def merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in top.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
        return out

    return parse_config(merge(config_to_data(config), overrides), source)


#: What a simulation adds to the device id (and to a configured MQTT client id).
SIMULATION_SUFFIX = "-sim"


def simulation_device_id(device_id: str) -> str:
    """The id a simulation of ``device_id`` goes by: ``<device_id>-sim``, cut to the 64
    characters a device id may have."""
    return device_id[: 64 - len(SIMULATION_SUFFIX)] + SIMULATION_SUFFIX


def simulation_config(config: Config) -> Config:
    """``config`` as a simulation uses it: its own device id in topics, discovery and records,
    and its own MQTT client id, so a demo on a machine whose broker serves the real device
    never overwrites that device's retained messages or takes over its connection."""
    overrides: dict[str, Any] = {"device_id": simulation_device_id(config.device_id)}
    client_id = config.mqtt.client_id
    if client_id is not None:
        overrides["mqtt"] = {
            "client_id": client_id[: 64 - len(SIMULATION_SUFFIX)] + SIMULATION_SUFFIX
        }
    return with_overrides(config, overrides, "--simulate")
