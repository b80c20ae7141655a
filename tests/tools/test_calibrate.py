"""Host calibration: the fit, a quick real calibration, the JSON round trip and bad files."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.tools.calibrate import Calibration, calibrate, fit_line


def _calibration() -> Calibration:
    return Calibration(
        host={"cpu_model": "test"},
        ms_per_unit={"parse": 0.07},
        fixed_overhead_ms={"parse": 1.5},
        r2={"parse": 0.99},
        size_units={"parse": "KB"},
        measured_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_fit_line_recovers_slope_and_intercept() -> None:
    slope, intercept, r2 = fit_line([1, 2, 3, 4], [7.0, 9.0, 11.0, 13.0])
    assert (slope, intercept, r2) == pytest.approx((2.0, 5.0, 1.0))


def test_quick_calibration_measures_a_positive_slope() -> None:
    cal = calibrate(kinds=("parse",), budget_s=0.5)
    assert cal.ms_per_unit["parse"] > 0
    assert cal.r2["parse"] <= 1.0  # how close to 1 depends on what else the host is running
    assert cal.host["cpu_logical_cores"] >= 1
    assert "KB" in cal.size_units["parse"]
    assert cal.predict_ms("parse", 100) > 0


def test_calibrate_rejects_unknown_kinds() -> None:
    with pytest.raises(ConfigError, match="web_browse"):
        calibrate(kinds=("web_browse",), budget_s=0.1)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "calibration.json"
    cal = _calibration()
    cal.save(path)
    assert Calibration.load(path) == cal


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        json.dumps({"host": {}}),
        json.dumps({**json.loads(_calibration().model_dump_json()), "ms_per_unit": {"parse": 0}}),
        json.dumps({**json.loads(_calibration().model_dump_json()), "extra": 1}),
    ],
)
def test_bad_file_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.json"):
        Calibration.load(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.json"):
        Calibration.load(tmp_path / "nope.json")


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is for a harness running as root")
def test_code_exec_is_not_calibrated_as_root_without_bwrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    with pytest.raises(ConfigError, match=r"apt-get install bubblewrap.*--kinds parse"):
        calibrate(kinds=("code_exec", "parse"), budget_s=0.1)
