"""Report tables on a console: never wider than it, nothing cut short (names wrap, numbers
stay whole), text left-aligned and figures right-aligned, a table too wide split into parts
that repeat the row labels, a section without rows printed as its one-line note."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from harness.console_tables import break_name, print_sections, section_tables
from harness.figures import Section

NAMES = [
    "a100-llama70b-bf16-derived",
    "b200-llama70b-fp8-derived",
    "gb200-llama70b-fp8-derived",
    "h100-llama70b-fp8-derived",
    "h200-llama70b-fp8-trtllm",
    "mi300x-llama70b-fp8-derived",
    "cpu-gen-a",
    "cpu-gen-b",
]


def _fleet() -> Section:
    sec = Section("Fleet per profile (default model)", ("figure", *NAMES))
    sec.rows.append(("Tokens per day (input+output)", *(["30.00 T"] * len(NAMES))))
    sec.rows.append(("GPUs", *(f"{685_091 + i:,}" for i in range(6)), "384,752 (CPU hosts)", "n/a"))
    sec.rows.append(("Facility power, peak (MW)", *(["1,042.03"] * 6), "n/a", "n/a"))
    return sec


def _render(sections: list[Section], width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, markup=False, emoji=False, color_system=None)
    print_sections(sections, console)
    return out.getvalue()


@pytest.mark.parametrize("width", [80, 120])
def test_profile_names_are_never_cut_and_lines_fit(width: int) -> None:
    text = _render([_fleet()], width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in text
    for number in ("685,091", "685,096", "1,042.03", "384,752", "30.00 T"):
        assert number in text  # never broken across lines
    headers = [
        col.header.plain.replace("\n", "")
        for table in section_tables(_fleet(), width)
        for col in table.columns[1:]
    ]
    assert headers == NAMES  # every name whole, in order, across the parts


def test_a_table_too_wide_is_split_and_repeats_the_labels() -> None:
    tables = section_tables(_fleet(), 80)
    assert len(tables) == 2
    for table in tables:
        assert table.columns[0].header.plain == "figure"
        assert str(table.title).startswith("Fleet per profile (default model) (part ")
    assert len(section_tables(_fleet(), 200)) == 1


def test_text_left_figures_right() -> None:
    sec = Section("Profiles", ("profile", "origin", "GPUs"))
    sec.rows.append(("a100", "published", "1,234"))
    sec.rows.append(("cpu-gen-a", "measured", "n/a"))
    (table,) = section_tables(sec, 80)
    assert [c.justify for c in table.columns] == ["left", "left", "right"]


def test_a_section_without_rows_is_one_line() -> None:
    sec = Section("Energy", ("figure", "value"), note="not measured: GPU (NVML did not initialise)")
    text = _render([sec], 80)
    assert text.strip() == "Energy: not measured: GPU (NVML did not initialise)"


def test_break_name_keeps_every_character() -> None:
    for text, width in (("a100-llama70b-bf16-derived", 9), ("azure2023_AzureLLMInferenceTrace", 8)):
        broken = break_name(text, width)
        assert broken.replace("\n", "") == text
        assert max(len(line) for line in broken.splitlines()) <= width
    assert re.split("\n", break_name("a100-llama70b-bf16-derived", 10))[0] == "a100-"
