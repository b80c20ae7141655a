"""RaplReader on a temp powercap tree (wraparound, permission denied) and on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.telemetry.rapl import POWERCAP_ROOT, RaplReader


def make_zone(root: Path, name: str, energy_uj: int, max_uj: int = 1_000_000) -> Path:
    """One fake powercap zone folder, laid out like the kernel's."""
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (zone / "name").write_text("package-" + name.rsplit(":", 1)[1] + "\n")
    return zone


def test_reads_packages_and_unwraps(tmp_path: Path) -> None:
    z0 = make_zone(tmp_path, "intel-rapl:0", 900_000)
    make_zone(tmp_path, "intel-rapl:1", 0)
    make_zone(tmp_path / "intel-rapl:0", "intel-rapl:0:0", 5)  # a sub-zone: not a package
    make_zone(tmp_path, "intel-rapl:0:1", 5)
    reader = RaplReader(tmp_path)
    assert reader.available and reader.reason is None
    assert [s.energy_j for s in reader.read()] == [0.0, 0.0]
    (z0 / "energy_uj").write_text("950000\n")
    assert reader.read()[0].energy_j == pytest.approx(0.05)
    (z0 / "energy_uj").write_text("100000\n")  # wrapped past 1_000_000
    s0, s1 = reader.read()
    assert s0.energy_j == pytest.approx(0.2) and s0.name == "package-0"
    assert s1.energy_j == 0.0
    assert reader.status()["zones"] == ["package-0", "package-1"]


def test_missing_root_is_unavailable(tmp_path: Path) -> None:
    reader = RaplReader(tmp_path / "nope")
    assert not reader.available and "does not exist" in (reader.reason or "")
    assert reader.read() == []
    empty = RaplReader(tmp_path)
    assert not empty.available and "no intel-rapl package zones" in (empty.reason or "")


def test_permission_denied_is_unavailable_with_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = make_zone(tmp_path, "intel-rapl:0", 1)
    (zone / "energy_uj").chmod(0)
    if os.geteuid() == 0:  # root reads a mode-000 file anyway: deny it as the kernel would
        real_read_text = Path.read_text

        def denied(self: Path, *args: object, **kwargs: object) -> str:
            if self.name == "energy_uj":
                raise PermissionError(13, "Permission denied", str(self))
            return real_read_text(self)

        monkeypatch.setattr(Path, "read_text", denied)
    reader = RaplReader(tmp_path)
    assert not reader.available
    assert "permission denied" in (reader.reason or "")
    assert reader.read() == []


def test_vanished_zone_is_reported_once(tmp_path: Path) -> None:
    zone = make_zone(tmp_path, "intel-rapl:0", 1)
    reader = RaplReader(tmp_path)
    (zone / "energy_uj").unlink()
    assert reader.read() == [] and reader.read() == []
    assert len(reader.problems) == 1


def test_real_machine_path() -> None:
    """Whatever this host gives: readable values, or unavailable with a reason."""
    reader = RaplReader()
    assert reader.root == POWERCAP_ROOT
    if reader.available:
        samples = reader.read()
        assert samples and all(s.energy_j >= 0 for s in samples)
    else:
        assert reader.reason
        assert reader.read() == []
