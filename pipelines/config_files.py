"""Flow configs from TOML files plus command-line overrides, with errors that name the field.

Every flow has one pydantic config model. A preset is a small TOML file whose tables
mirror the model's nested sections:

    # corpus.toml
    batch_size = 64
    [fetch]
    per_host_delay_s = 2.0

Command-line options override the file; the model validates the result once, at start.
A name the model does not know (a misspelled `[pretrian]`, a stray `batchsize`) is refused
with the names it knows, never ignored: a typo that silently ran on defaults would cost an
hour of training before anyone noticed.
"""

from __future__ import annotations

import difflib
import inspect
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from model.errors import Gpt2labError

Config = TypeVar("Config", bound=BaseModel)


class ConfigError(Gpt2labError):
    """A config file or option with a bad value; the message names the file and field."""


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def describe_validation_error(err: ValidationError, source: str) -> str:
    """One line: the first problem with its dotted field path, and how many more."""
    first = err.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = len(err.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {field}: {first['msg']}{suffix}"


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds, if any (`Inner`, `Inner | None`, `Optional[Inner]`)."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for m in map(_nested_model, typing.get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def check_known_names(
    model: type[BaseModel], values: Mapping[str, Any], source: str, where: str = ""
) -> None:
    """Refuse any key of `values` (and of its tables, for fields that hold a model) that
    `model` has no field for, naming the closest known name and all of them."""
    fields = model.model_fields
    known = set(fields) | {field.alias for field in fields.values() if field.alias}
    for key, value in values.items():
        if key not in known:
            kind = "section" if isinstance(value, Mapping) else "field"
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean `{where}{close[0]}`?)" if close else ""
            raise ConfigError(
                f"{source}: unknown {kind} `{where}{key}`{hint}; known: {', '.join(sorted(known))}"
            )
        inner = _nested_model(fields[key].annotation) if key in fields else None
        if inner is not None and isinstance(value, Mapping):
            check_known_names(inner, value, source, f"{where}{key}.")


def load_config(
    model: type[Config],
    toml_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Validate `overrides` on top of the TOML file (if any) as a `model`."""
    values: dict[str, Any] = {}
    source = "options"
    if toml_path is not None:
        source = str(toml_path)
        try:
            values = tomllib.loads(Path(toml_path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {toml_path}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{toml_path}: not valid TOML ({err})") from None
    check_known_names(model, values, source)
    values = _merge(values, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, source)) from None
