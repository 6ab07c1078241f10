"""YAML ⇄ typed config: presets, files and ``section.key=value`` overrides, validated on load."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any

from semgen_ray.config.schema import ConfigError, SemGenConfig

PRESETS = ("paper", "cpu-tiny", "cpu-small", "cpu-tiny-2d", "paper-2d")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert YAML lists to tuples."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} items, got {len(value)}: {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where} must be a mapping of names to values, got {value!r}")
        return {k: _freeze(v) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def _freeze(value):
    """YAML lists → tuples, recursively (configs are immutable)."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _build(cls, data: Any, where: str):
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key {path!r}{hint}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where or 'config'}: {err}") from err


def from_dict(data: dict | None) -> SemGenConfig:
    """Build and validate a :class:`SemGenConfig` from plain data (as loaded from YAML)."""
    return _build(SemGenConfig, data, "")


def to_dict(config) -> dict:
    """Plain, YAML-ready data of a config (tuples become lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return plain(config)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(text: str, where: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping")
    return data


def preset_dict(name: str) -> dict:
    """The raw data of a built-in preset (``paper``, ``cpu-tiny``, ``cpu-small``, ``cpu-tiny-2d`` or ``paper-2d``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets are {', '.join(PRESETS)}")
    text = resources.files("semgen_ray.config").joinpath("presets", f"{name}.yaml").read_text()
    return _read_yaml(text, f"preset {name}")


def parse_override(text: str) -> dict:
    """``"train.lr=3e-4"`` → ``{"train": {"lr": 3e-4}}`` (the value is parsed as YAML)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    value = yaml.safe_load(raw) if raw.strip() else None
    out: dict = value
    for part in reversed(key.strip().split(".")):
        out = {part: out}
    return out


def load_config(source: str | Path | dict | None = None, overrides: typing.Sequence[str] = ()) -> SemGenConfig:
    """Load a config from a preset name or a YAML file, apply overrides, validate.

    A YAML file may start from a preset with a top-level ``preset: cpu-tiny`` key; its other keys
    override that preset.

    Args:
        source: ``None`` (the ``cpu-tiny`` preset), a preset name, a path to a YAML file, or a dict
            of sections (``{}``: the schema's defaults).
        overrides: ``section.key=value`` strings, applied in order.

    Raises:
        ConfigError: unknown keys (with the closest known key), wrong types, out-of-range values.
    """
    if isinstance(source, dict):
        data = dict(source)
    elif source is None or str(source) in PRESETS:
        data = preset_dict(str(source or "cpu-tiny"))
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (presets: {', '.join(PRESETS)})")
        data = _read_yaml(path.read_text(), str(path))
        base = data.pop("preset", None)
        if base is not None:
            data = _merge(preset_dict(str(base)), data)
    for text in overrides:
        data = _merge(data, parse_override(text))
    return from_dict(data)
