"""harness.suggest: the known names closest to a mistyped one, and catalog-style names that
match ignoring case, spaces, hyphens and underscores."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.suggest import close_files, close_names, did_you_mean, find_name, normalised, suggest

CATALOG = ["A100-SXM-80GB", "H100-SXM", "H200-SXM", "B200-HGX", "GB200", "MI300X"]


@pytest.mark.parametrize("written", ["H100 SXM", "h100-sxm", "H100_SXM", "h100sxm", " H100  SXM "])
def test_accelerator_names_match_ignoring_case_spaces_hyphens_underscores(written: str) -> None:
    assert normalised(written) == "h100sxm"
    assert find_name(written, CATALOG) == "H100-SXM"


def test_an_exact_name_is_itself_and_an_unknown_one_is_none() -> None:
    assert find_name("GB200", CATALOG) == "GB200"
    assert find_name("H300", CATALOG) is None


def test_two_names_equal_once_normalised_are_not_guessed_between() -> None:
    assert find_name("a b", ["A-B", "a_b"]) is None
    assert find_name("A-B", ["A-B", "a_b"]) == "A-B"


def test_close_names_best_first() -> None:
    keys = ["max_requests", "max_concurrency", "duration_s", "warmup_requests"]
    assert close_names("max_concurency", keys)[0] == "max_concurrency"
    assert close_names("poison", ["trace", "poisson", "constant", "closed"]) == ["poisson"]
    assert close_names("zzz", keys) == []


def test_loose_matching_suggests_the_catalogs_spelling() -> None:
    assert close_names("h100 sxmm", CATALOG, loose=True)[0] == "H100-SXM"
    assert close_names("mi300", CATALOG, loose=True) == ["MI300X"]
    assert close_names("h100 sxmm", CATALOG) == []  # case and separators count when strict


def test_did_you_mean_wording() -> None:
    assert did_you_mean([]) == ""
    assert did_you_mean(["a"]) == " (did you mean 'a'?)"
    assert did_you_mean(["a", "b", "c"]) == " (did you mean 'a', 'b' or 'c'?)"
    assert suggest("mooncak", ["mooncake", "azure"]) == " (did you mean 'mooncake'?)"
    assert suggest("qqq", ["mooncake", "azure"]) == ""


def test_close_files_looks_beside_the_path_and_in_the_extra_folders(tmp_path: Path) -> None:
    here, shipped = tmp_path / "here", tmp_path / "workloads"
    here.mkdir()
    shipped.mkdir()
    (here / "demo-agent.yaml").write_text("")
    (shipped / "demo-chatbot.yaml").write_text("")
    (shipped / "unrelated.txt").write_text("")
    found = close_files(here / "demo-chatbto.yaml", [shipped])
    assert str(shipped / "demo-chatbot.yaml") in found
    assert all("unrelated" not in f for f in found)
    assert close_files(tmp_path / "missing-folder" / "x.yaml") == []
