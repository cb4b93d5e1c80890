"""The plain-value (YAML) form of a config: reading, checking and writing it.

`dataclass_from` builds a frozen config dataclass from nested plain values,
every key checked against the dataclass's fields and every value against the
field's type hint (`check_type`); `read_yaml_mapping` reads a config file,
`apply_overrides` sets dotted keys (`--set model.units=64`) and `plain_values`
turns `dataclasses.asdict` output back into plain types. `rq_keras.config.configs`
binds these to `TrainConfig` (`config_from_dict`, `load_config`). A leaf:
imports nothing of rq_keras, nor TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["apply_overrides"]


def plain_values(value):
    """Plain types (lists for tuples) of nested dicts, lists and tuples."""
    if isinstance(value, dict):
        return {k: plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    return value


def check_type(value, annotation, where: str):
    """`value` converted to `annotation` (a resolved type hint), or ValueError."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(annotation):
            try:
                return check_type(value, option, where)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"config: `{where}` got {value!r}, which is none of {annotation}")
    if annotation is type(None):
        if value is None:
            return None
        raise ValueError(f"config: `{where}` must be null, got {value!r}")
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(f"config: `{where}` must be a list, got {value!r}")
        return tuple(check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 (PyYAML) reads `1e-3` and `1.0e9` as strings; they are
            # numbers to anyone writing a config or a --set value.
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
    name = getattr(annotation, "__name__", str(annotation))
    raise ValueError(f"config: `{where}` must be {name}, got {value!r}")


def dataclass_from(cls, values: Mapping[str, Any], where: str):
    """A `cls` from `values`, nested dataclass fields from nested mappings.

    Raises:
        ValueError: an unknown key, a wrong type or what `cls` refuses,
            naming the key path under `where` ("" at the top level).
    """
    if not isinstance(values, Mapping):
        raise ValueError(f"config: `{where or 'the config'}` must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(
            f"config: unknown key(s) {unknown} in `{where or 'the top level'}`; "
            f"known: {sorted(fields)}"
        )
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(hints[key]):
            kwargs[key] = dataclass_from(hints[key], value or {}, path)
        else:
            kwargs[key] = check_type(value, hints[key], path)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        message = str(err)
        if not message.startswith("config:"):
            message = f"config: `{where}`: {message}" if where else f"config: {message}"
        raise ValueError(message) from None


def read_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping a YAML config file holds ({} for an empty file)."""
    with open(path, encoding="utf-8") as f:
        try:
            values = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"config: {path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config: {path} must hold a mapping, got {type(values).__name__}")
    return values


def apply_overrides(values: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Sets dotted keys (`{"model.units": 64}`) in a config mapping, in place.

    Returns:
        `values`, for chaining into `config_from_dict`.
    """
    for key, value in dict(overrides).items():
        *parents, last = key.split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"config: cannot set `{key}`: `{part}` is not a section")
        node[last] = value
    return values
