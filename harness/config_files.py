"""Reading YAML and JSON inputs (workloads, scenarios, profiles, catalogs) and turning
validation errors into messages that name the file and the dotted key, so a user can find the
bad line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def dotted(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """A pydantic error location as a dotted key ("demand.tokens_per_day", "values.2")."""
    parts = [prefix] if prefix else []
    parts.extend(str(p) for p in loc)
    return ".".join(parts) or "(top level)"


def error_lines(err: ValidationError, prefix: str = "") -> list[str]:
    """One phrase per problem: `key 'a.b': message`, `unknown key 'a'` or a top-level message."""
    lines = []
    for e in err.errors():
        key = dotted(e["loc"], prefix)
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        elif not e["loc"] and not prefix:
            lines.append(msg)
        else:
            lines.append(f"key '{key}': {msg}")
    return lines


def validation_message(path: Path | str, err: ValidationError, prefix: str = "") -> str:
    """One line per problem, each starting with the file: `FILE: key 'a.b': message`."""
    return "\n".join(f"{path}: {line}" for line in error_lines(err, prefix))


def validate(model: type[M], data: Any, path: Path | str, prefix: str = "") -> M:
    """Validate `data` read from `path` as `model`; errors become one ConfigError."""
    if not isinstance(data, dict):
        where = f" '{prefix}'" if prefix else " at the top level"
        raise ConfigError(f"{path}: expected a mapping{where}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(validation_message(path, err, prefix)) from None


def _read_text(path: Path, what: str) -> str:
    """A file's text; an unreadable file is an error naming it and what it should hold."""
    try:
        return path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read {what}: {err.strerror}") from None


def read_yaml(path: Path, what: str) -> Any:
    """The parsed content of a YAML file; unreadable files and bad YAML name the file."""
    text = _read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {err}") from None


def read_json(path: Path, what: str) -> Any:
    """The parsed content of a JSON file; unreadable files and bad JSON name the file."""
    text = _read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
