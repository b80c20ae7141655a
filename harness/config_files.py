"""Reading YAML and JSON inputs (workloads, scenarios, profiles, catalogs) and turning
validation errors into messages that name the file and the dotted key, so a user can find the
bad line. The number types here (`FiniteFloat`, `Count`) are what every such file's numbers
are validated as: real numbers (not strings or booleans), finite, of a sane magnitude."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError

from harness.errors import ConfigError
from harness.suggest import close_names, did_you_mean, suggest

M = TypeVar("M", bound=BaseModel)

MAX_MAGNITUDE = 1e18
"""The largest number a YAML or JSON input may hold (a million times 30T tokens a day)."""
MIN_MAGNITUDE = 1e-9
"""The smallest non-zero magnitude: anything smaller is a typo, and dividing by it overflows."""


def _a_number(value: Any) -> Any:
    """Refuse what pydantic would coerce to a number (booleans and strings: `yes`, `"5"`)
    and, before any bound is checked, what is not finite (`.inf`, `.nan`, `1e400`)."""
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"expected a number, got {type(value).__name__} {value!r:.40}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return value


def _sane(value: float) -> float:
    """A number is 0 or of a magnitude from MIN_MAGNITUDE to MAX_MAGNITUDE."""
    if value != 0 and not MIN_MAGNITUDE <= abs(value) <= MAX_MAGNITUDE:
        raise ValueError(
            f"{value!r} is out of range: give 0 or a magnitude from {MIN_MAGNITUDE:g} "
            f"to {MAX_MAGNITUDE:g}"
        )
    return value


FiniteFloat = Annotated[
    float, BeforeValidator(_a_number), Field(allow_inf_nan=False), AfterValidator(_sane)
]
"""A real number of a YAML or JSON input: finite (no `.inf`, `.nan`, `1e400`), 0 or of a
magnitude within [MIN_MAGNITUDE, MAX_MAGNITUDE]; add per-key bounds with `Field(...)`."""

Count = Annotated[int, BeforeValidator(_a_number), Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
"""A whole number of a YAML or JSON input (4.0 is 4; 4.5, `"4"` and `true` are errors)."""


def lone_surrogate(value: Any) -> str | None:
    """The dotted path of the first string (key or value) in parsed YAML or JSON that holds a
    lone surrogate (`\\ud800`: not Unicode text, it cannot be printed or written), "" for the
    value itself, else None. Shared (aliased) and cyclic containers are visited once."""
    stack: list[tuple[str, Any]] = [("", value)]
    seen: set[int] = set()
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if not _is_unicode(item):
                return where
            continue
        if not isinstance(item, list | dict) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, list):
            stack.extend(reversed([(_join(where, i), v) for i, v in enumerate(item)]))
            continue
        for key in item:
            if isinstance(key, str) and not _is_unicode(key):
                return _join(where, key)
        stack.extend(reversed([(_join(where, k), v) for k, v in item.items()]))
    return None


def _is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _join(where: str, key: object) -> str:
    """A dotted path one level down."""
    return f"{where}.{key}" if where else str(key)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable_key(key: str) -> str:
    """A key as it can stand in a one-line message: control characters and line breaks
    escaped (`\\n`, `\\x1b`), every other character as it is."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], key)


def dotted(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """A pydantic error location as a dotted key ("demand.tokens_per_day", "values.2"),
    printable on one line."""
    parts = [prefix] if prefix else []
    parts.extend(str(p) for p in loc)
    return printable_key(".".join(parts)) if parts else "(top level)"


def error_lines(
    err: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
) -> list[str]:
    """One phrase per problem: `key 'a.b': message`, `unknown key 'a'` or a top-level message;
    a value outside a set of choices, and (given the `model` validated) an unknown key, end
    with the closest known ones (`(did you mean 'poisson'?)`)."""
    lines = []
    for e in err.errors():
        key = dotted(e["loc"], prefix)
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            known = keys_at(model, e["loc"][:-1]) if model is not None else []
            near = close_names(str(e["loc"][-1]), known)
            parent = dotted(e["loc"][:-1], prefix) if e["loc"][:-1] or prefix else ""
            hint = did_you_mean(f"{parent}.{n}" if parent else n for n in near)
            lines.append(f"unknown key '{key}'{hint}")
        elif not e["loc"] and not prefix:
            lines.append(msg)
        else:
            lines.append(f"key '{key}': {msg}{_choice_hint(e)}")
    return lines


def _choice_hint(error: Any) -> str:
    """`(did you mean 'x'?)` for a string given where one of a few literals is expected."""
    given = error.get("input")
    expected = (error.get("ctx") or {}).get("expected")
    if error["type"] not in ("literal_error", "enum") or not isinstance(given, str):
        return ""
    return suggest(given, re.findall(r"'([^']*)'", str(expected or "")))


def keys_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys a `model`'s section at the error location `loc` accepts (through nested
    models, optional ones, lists and mappings of them); [] where `loc` leads to no model."""
    node: Any = model
    for part in loc:
        node = _step(node, part)
        if node is None:
            return []
    found = _model_of(node)
    return [] if found is None else [f.alias or name for name, f in found.model_fields.items()]


def _step(node: Any, part: int | str) -> Any:
    """The type one location part below `node` (a field's, a list item's, a mapping value's)."""
    found = _model_of(node)
    if found is not None:
        field = found.model_fields.get(str(part))
        if field is None:
            field = next((f for f in found.model_fields.values() if f.alias == part), None)
        return None if field is None else field.annotation
    for arg in _members(node):
        origin = get_origin(arg)
        if origin in (list, tuple, set, frozenset) and isinstance(part, int):
            return get_args(arg)[0] if get_args(arg) else None
        if origin is dict and get_args(arg):
            return get_args(arg)[-1]
    return None


def _members(node: Any) -> list[Any]:
    """A type's alternatives: a union's members (Annotated unwrapped), or the type itself."""
    if get_origin(node) is Annotated:
        return _members(get_args(node)[0])
    if get_origin(node) in (Union, UnionType):
        return [m for arg in get_args(node) for m in _members(arg)]
    return [node]


def _model_of(node: Any) -> type[BaseModel] | None:
    """The pydantic model among a type's alternatives, if any."""
    for arg in _members(node):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def validation_message(
    path: Path | str, err: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    """One line per problem, each starting with the file: `FILE: key 'a.b': message`."""
    return "\n".join(f"{path}: {line}" for line in error_lines(err, prefix, model))


def validate(model: type[M], data: Any, path: Path | str, prefix: str = "") -> M:
    """Validate `data` read from `path` as `model`; errors become one ConfigError."""
    if not isinstance(data, dict):
        where = f" '{prefix}'" if prefix else " at the top level"
        raise ConfigError(f"{path}: expected a mapping{where}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(validation_message(path, err, prefix, model)) from None


def _read_text(path: Path, what: str) -> str:
    """A file's text; an unreadable file is an error naming it and what it should hold."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read {what}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: cannot read {what}: not UTF-8 text (byte {err.start})"
        ) from None


def _checked(path: Path, data: Any, kind: str) -> Any:
    """Parsed content without a string that is not Unicode text."""
    where = lone_surrogate(data)
    if where is not None:
        shown = printable_key(where.encode("utf-8", "backslashreplace").decode())
        key = f"key '{shown}'" if where else "the document"
        raise ConfigError(
            f"{path}: invalid {kind}: {key} holds a lone surrogate escape (\\ud800-\\udfff), "
            "not Unicode text"
        )
    return data


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2's floats: `1e9` and `3e-3` (YAML 1.1 needs a dot
    and a signed exponent, so it reads those as strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: Path, what: str) -> Any:
    """The parsed content of a YAML file; unreadable files and bad YAML (including nesting too
    deep to parse, integers of over 4,300 digits and impossible dates) name the file."""
    text = _read_text(path, what)
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        what_went_wrong = ", ".join(p for p in (err.context, err.problem) if p) or str(err)
        raise ConfigError(f"{where}: invalid YAML: {' '.join(what_went_wrong.split())}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except (ValueError, OverflowError) as err:  # a scalar's constructor: int(), date()
        raise ConfigError(f"{path}: invalid YAML: {_scalar_problem(err)}") from None
    return _checked(path, data, "YAML")


def read_json(path: Path, what: str) -> Any:
    """The parsed content of a JSON file; unreadable files and bad JSON (including nesting too
    deep to parse and integers of over 4,300 digits) name the file."""
    text = _read_text(path, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid JSON: nested too deeply") from None
    except ValueError as err:
        raise ConfigError(f"{path}: invalid JSON: {_scalar_problem(err)}") from None
    return _checked(path, data, "JSON")


def _scalar_problem(err: Exception) -> str:
    """A scalar's conversion error in words (Python's int limit message names a sys call)."""
    text = str(err)
    if "integer string conversion" in text:
        return "an integer of more than 4,300 digits"
    return " ".join(text.split()) or type(err).__name__
