"""Reading YAML/JSON inputs: every error names the file (and the line or dotted key)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from harness.config_files import read_json, read_yaml, validate
from harness.errors import ConfigError
from harness.workload.spec import load_workload


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: float = Field(gt=0)


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: _Inner


def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nb: [unclosed\n")
    with pytest.raises(ConfigError, match=r"x\.yaml:\d+: invalid YAML"):
        read_yaml(path, "scenario")


def test_bad_json_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{\n  "a": 1,\n}\n')
    with pytest.raises(ConfigError, match=r"c\.json:3: invalid JSON"):
        read_json(path, "capacity")


def test_missing_file_says_what_was_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read workload"):
        read_yaml(tmp_path / "none.yaml", "workload")


def test_validation_errors_name_the_dotted_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    with pytest.raises(ConfigError) as err:
        validate(_Outer, {"inner": {"rate": -1, "typo": 2}}, path)
    text = str(err.value)
    assert f"{path}: key 'inner.rate': Input should be greater than 0" in text
    assert f"{path}: unknown key 'inner.typo'" in text


def test_a_list_where_a_mapping_belongs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        validate(_Outer, [1, 2], tmp_path / "s.yaml")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("deep.yaml", "[" * 100_000, "invalid YAML: nested too deeply"),
        ("deep.json", "[" * 100_000, "invalid JSON: nested too deeply"),
        ("long.yaml", "a: " + "9" * 5000, "an integer of more than 4,300 digits"),
        ("long.json", '{"a": ' + "9" * 5000 + "}", "an integer of more than 4,300 digits"),
        ("date.yaml", "a: 2001-02-30", "invalid YAML: day is out of range for month"),
        ("float.yaml", "a: !!float abc", "invalid YAML: could not convert"),
        ("sur.yaml", 'a:\n  b: "\\ud800"', "key 'a.b' holds a lone surrogate"),
        ("sur.json", '{"\\udc00": 1}', "key '\\udc00' holds a lone surrogate"),
    ],
)
def test_unparseable_inputs_are_config_errors_naming_the_file(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    read = read_json if name.endswith(".json") else read_yaml
    with pytest.raises(ConfigError) as info:
        read(path, "scenario")
    assert str(info.value).startswith(f"{path}")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_yaml_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\n? [1, 2]\n: 3\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path, "scenario")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{path}:2: invalid YAML: while constructing a mapping")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: cannot read scenario: not UTF-8 text"):
        read_yaml(path, "scenario")


def test_aliases_and_cycles_are_walked_once(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 30):  # 10 × 2**29 strings if expanded
        laughs += f"a{i}: &a{i} [*a{i - 1 if i > 1 else ''}, *a{i - 1 if i > 1 else ''}]\n"
    laughs = laughs.replace("*a0", "*a").replace("&a0", "&a")
    path.write_text(laughs + "self: &s [*s]\n")
    data = read_yaml(path, "scenario")
    assert data["self"][0] is data["self"]


def test_an_empty_key_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        validate(_Outer, {"inner": {"rate": 1}, "": 2}, tmp_path / "s.yaml")
    assert str(err.value).endswith("unknown key ''")


def test_a_key_with_control_characters_stays_on_one_line(tmp_path: Path) -> None:
    """A key holding a line break or an escape code is shown escaped, so every line of the
    error still names the file."""
    from harness.config_files import printable_key

    assert printable_key("a\nb\r\x1bc é") == "a\\nb\\r\\x1bc é"
    path = tmp_path / "w.yaml"
    path.write_text('name: x\nsource:\n  synthetic: chatbot\n"bad\\nkey": 1\n')
    with pytest.raises(ConfigError) as err:
        load_workload(path)
    assert all(line.startswith(str(path)) for line in str(err.value).splitlines())
    assert "bad\\nkey" in str(err.value)


# --- did you mean ------------------------------------------------------------------------------

_WORKLOAD_TYPOS = """\
name: typos
source:
  synthetic: chatbot
arrival:
  pattern: poison
  rate_per_s: 1
limits:
  max_concurency: 3
"""


def test_unknown_keys_and_choices_suggest_the_closest_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "typos.yaml"
    path.write_text(_WORKLOAD_TYPOS)
    with pytest.raises(ConfigError) as info:
        load_workload(path)
    lines = str(info.value).splitlines()
    assert (
        f"{path}: unknown key 'limits.max_concurency' (did you mean 'limits.max_concurrency'?)"
        in lines
    )
    assert (
        f"{path}: key 'arrival.pattern': Input should be 'trace', 'poisson', 'constant' or "
        "'closed' (did you mean 'poisson'?)"
    ) in lines


def test_a_trace_format_typo_suggests_the_format(tmp_path: Path) -> None:
    path = tmp_path / "fmt.yaml"
    path.write_text("name: f\nsource:\n  trace: t.jsonl\n  format: mooncak\n")
    with pytest.raises(ConfigError, match=r"key 'source.format': .*\(did you mean 'mooncake'\?\)"):
        load_workload(path)


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens_per_day: float


class _Nested(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[_Item]
    named: dict[str, _Item]
    maybe: _Inner | None = None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"items": [], "named": {}, "mabye": {}}, "unknown key 'mabye' (did you mean 'maybe'?)"),
        (
            {"items": [{"tokens_per_dy": 1}], "named": {}},
            "unknown key 'items.0.tokens_per_dy' (did you mean 'items.0.tokens_per_day'?)",
        ),
        (
            {"items": [], "named": {"a": {"tokens_per_day": 1, "tokns_per_day": 2}}},
            "unknown key 'named.a.tokns_per_day' (did you mean 'named.a.tokens_per_day'?)",
        ),
        (
            {"items": [], "named": {}, "maybe": {"rate": 1, "rat": 2}},
            "unknown key 'maybe.rat' (did you mean 'maybe.rate'?)",
        ),
        ({"items": [], "named": {}, "zzzz": 1}, "unknown key 'zzzz'"),
    ],
)
def test_unknown_keys_are_matched_in_nested_lists_mappings_and_optional_sections(
    tmp_path: Path, data: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        validate(_Nested, data, tmp_path / "n.yaml")
    assert f"{tmp_path / 'n.yaml'}: {message}" in str(info.value).splitlines()


def test_a_prefix_is_part_of_the_suggested_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        validate(_Inner, {"rate": 1, "rte": 2}, "f.yaml", prefix="inner")
    assert str(info.value) == "f.yaml: unknown key 'inner.rte' (did you mean 'inner.rate'?)"
