"""The accelerator catalog: reference.md's six rows with sources, user extensions, errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from fleet_builders import REPO

from harness.errors import ConfigError
from harness.fleet.catalog import (
    builtin_catalog_path,
    catalog_name,
    load_catalog,
    match_accelerator,
    unknown_accelerator,
)

ROWS = {
    # name: (board W, HBM GB, TB/s, BF16 TFLOPS, FP8 TFLOPS, secondary source)
    "A100-SXM-80GB": (400, 80, 2.04, 312, None, False),
    "H100-SXM": (700, 80, 3.35, 989, 1979, False),
    "H200-SXM": (700, 141, 4.8, 989, 1979, False),
    "B200-HGX": (1000, 180, 8.0, 2250, 4500, True),
    "GB200": (1200, 186, 8.0, 2500, 5000, True),
    "MI300X": (750, 192, 5.3, 1307, 2615, False),
}


def test_builtin_catalog_has_reference_rows_with_sources() -> None:
    catalog = load_catalog()
    assert set(catalog) == set(ROWS)
    for name, (power, hbm, bw, bf16, fp8, secondary) in ROWS.items():
        acc = catalog[name]
        assert (acc.board_power_w, acc.hbm_gb, acc.hbm_bandwidth_tb_s) == (power, hbm, bw)
        assert (acc.bf16_dense_tflops, acc.fp8_dense_tflops) == (bf16, fp8)
        assert acc.secondary_source is secondary
        assert acc.source and ("secondary" in acc.source) is secondary


def test_peak_flops_per_precision() -> None:
    catalog = load_catalog()
    assert catalog["H100-SXM"].peak_flops("bf16") == pytest.approx(989e12)
    assert catalog["H100-SXM"].peak_flops("fp8") == pytest.approx(1979e12)
    assert catalog["A100-SXM-80GB"].peak_flops("fp8") is None


def test_catalog_ships_as_package_data() -> None:
    assert builtin_catalog_path().is_file()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["harness.fleet"]
    assert "*.yaml" in data


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


ENTRY = """  X1:
    board_power_w: 500
    hbm_gb: 96
    hbm_bandwidth_tb_s: 4.0
    bf16_dense_tflops: 800
    fp8_dense_tflops: null
    source: my lab's datasheet
"""


def test_user_catalog_extends_and_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, "accelerators:\n" + ENTRY + ENTRY.replace("X1", "H100-SXM"))
    catalog = load_catalog(path)
    assert catalog["X1"].board_power_w == 500
    assert catalog["H100-SXM"].source == "my lab's datasheet"
    assert "MI300X" in catalog


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("accelerators:\n" + ENTRY + "    colour: red\n", "unknown key 'accelerators.X1.colour'"),
        (
            "accelerators:\n" + ENTRY.replace("500", "-5"),
            "key 'accelerators.X1.board_power_w'",
        ),
        ("accelerators:\n" + ENTRY.replace("    source: my lab's datasheet\n", ""), "X1.source"),
        ("gpus: {}\n", "unknown key 'gpus'"),
    ],
)
def test_bad_user_catalog_names_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_missing_user_catalog(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such catalog file"):
        load_catalog(tmp_path / "none.yaml")


def test_match_accelerator_by_device_name() -> None:
    catalog = load_catalog()
    assert match_accelerator("NVIDIA H100 80GB HBM3", catalog) == "H100-SXM"
    assert match_accelerator("nvidia h200", catalog) == "H200-SXM"
    assert match_accelerator("MI300X", catalog) == "MI300X"
    assert match_accelerator("NVIDIA H100 PCIe", catalog) is None


@pytest.mark.parametrize("written", ["H100 SXM", "h100-sxm", "H100_SXM", "h100sxm"])
def test_catalog_names_match_ignoring_case_spaces_hyphens_underscores(written: str) -> None:
    catalog = load_catalog()
    assert catalog_name(written, catalog) == "H100-SXM"
    assert match_accelerator(written, catalog) == "H100-SXM"


def test_an_unknown_accelerator_names_the_closest_and_every_known_one() -> None:
    catalog = load_catalog()
    assert catalog_name("H100 SXMM", catalog) is None
    why = unknown_accelerator("H100 SXMM", catalog)
    assert why.startswith("'H100 SXMM' is not in the catalog (did you mean 'H100-SXM'")
    assert all(name in why.split("known: ")[1] for name in catalog)
