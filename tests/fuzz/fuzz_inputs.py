"""Hypothesis strategies and settings shared by the fuzz tests (imported as a top-level module,
like tests/fleet/fleet_builders.py): arbitrary JSON values and text, the nasty values found
by hand (NaN, inf, 1e308, huge integers, lone surrogates, markup, deep nesting), and
mutations of valid records (a field replaced, removed or added)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Reproducible and quick: a fixed sequence of examples, no example database, no deadline
(the first example of a test pays for imports)."""

NASTY_TEXT: tuple[str, ...] = (
    "",
    " ",
    "[/x]",
    "[bold red]x[/]",
    "[/]",
    "\ud800",
    "a\udfffb",
    "é€𝄞",
    "\x00",
    "\t",
    "1e400",
    "nan",
    "inf",
    "-1",
    "9" * 5000,
    "0x1F",
    "+99:99",
    "2024-05-10 00:00:00+99:99",
    "1970-01-01 00:00:00",
    "9999-12-31 23:59:59.999999999",
    '"',
    ",",
    "true",
    "null",
    "{}",
    "[]",
)
NASTY_NUMBERS: tuple[Any, ...] = (
    0,
    -1,
    -0.0,
    0.5,
    1.5,
    511,
    512,
    513,
    2**31,
    2**32,
    2**63,
    2**64,
    10**9,
    10**9 + 1,
    10**40,
    10**400,
    float("nan"),
    float("inf"),
    float("-inf"),
    1e308,
    -1e308,
    5e-324,
    True,
    False,
)

texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    NASTY_TEXT
)
numbers = (
    st.integers()
    | st.integers(min_value=-(10**50), max_value=10**50)
    | st.floats()
    | st.sampled_from(NASTY_NUMBERS)
)
scalars = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=8,
)
"""Any value Python's json can write (NaN and Infinity included, as Python writes them)."""

DEEP: tuple[str, ...] = ("[" * 100_000, '{"a": ' * 50_000, "[" * 900 + "]" * 900)
"""Nesting past the decoder's recursion limit, and just within it."""


def _slots(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every position in a nested record (the empty path is the record itself)."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _slots(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _slots(child, (*path, i))


def _set(record: Any, path: tuple[Any, ...], action: str, new: Any, key: str) -> Any:
    """`record` with the value at `path` replaced, removed, or given an extra key."""
    if not path:  # the record itself: only a key is added (other values come whole)
        if action == "add" and isinstance(record, dict):
            record[key] = new
        return record
    parent = record
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "replace":
        parent[last] = new
    elif action == "delete":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][key] = new
    elif isinstance(parent[last], list):
        parent[last].append(new)
    else:
        parent[last] = new
    return record


@st.composite
def mutated(draw: st.DrawFn, valid: Any, values: st.SearchStrategy[Any] = json_values) -> Any:
    """A valid record with one to three of its fields replaced, removed or added."""
    record = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_slots(record))))
        action = draw(st.sampled_from(("replace", "replace", "delete", "add")))
        record = _set(record, path, action, draw(values), draw(texts))
    return record
