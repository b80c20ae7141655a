"""CPU package energy from Intel RAPL under /sys/class/powercap, unwrapped across counter wraps.

Where RAPL is absent or unreadable (energy_uj is root-only since CVE-2020-8694) it is reported
unavailable with the reason, once, and no energy is ever written as 0."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POWERCAP_ROOT = Path("/sys/class/powercap")
_PACKAGE_ZONE = re.compile(r"^intel-rapl:(\d+)$")


@dataclass(slots=True, frozen=True)
class RaplSample:
    """One package zone's energy since the reader opened, in joules (wraps already undone)."""

    zone: int
    name: str
    energy_j: float


@dataclass(slots=True)
class _Zone:
    """A package zone's files and its unwrapping state."""

    index: int
    name: str
    energy_path: Path
    max_range_uj: int | None
    first_uj: int
    last_uj: int
    wraps: int = 0


def _read_int(path: Path) -> int:
    """An integer sysfs file."""
    return int(path.read_text().strip())


class RaplReader:
    """Reads every package zone's energy counter; unavailable with a reason where it can't."""

    def __init__(self, root: Path | str = POWERCAP_ROOT) -> None:
        self.root = Path(root)
        self.available = False
        self.reason: str | None = None
        self.problems: list[str] = []
        self._zones: list[_Zone] = []
        self._open()

    def _open(self) -> None:
        """Find package zones and take each counter's first reading as its origin."""
        try:
            entries = sorted(p for p in self.root.iterdir() if _PACKAGE_ZONE.match(p.name))
        except FileNotFoundError:
            self.reason = f"{self.root} does not exist (no powercap/RAPL on this host)"
            return
        except OSError as err:
            self.reason = f"{self.root} is unreadable: {type(err).__name__}: {err}"
            return
        if not entries:
            self.reason = f"no intel-rapl package zones under {self.root}"
            return
        for entry in entries:
            match = _PACKAGE_ZONE.match(entry.name)
            assert match is not None
            energy = entry / "energy_uj"
            try:
                first = _read_int(energy)
            except PermissionError:
                self.reason = (
                    f"permission denied reading {energy} (root-only since CVE-2020-8694; "
                    "grant read access to measure CPU energy)"
                )
                self._zones = []
                return
            except (OSError, ValueError) as err:
                self.reason = f"cannot read {energy}: {type(err).__name__}: {err}"
                self._zones = []
                return
            try:
                max_range: int | None = _read_int(entry / "max_energy_range_uj")
            except (OSError, ValueError):
                max_range = None
            try:
                name = (entry / "name").read_text().strip()
            except OSError:
                name = entry.name
            self._zones.append(_Zone(int(match.group(1)), name, energy, max_range, first, first))
        self.available = True

    def read(self) -> list[RaplSample]:
        """Each zone's energy since opening; [] when unavailable, a failing zone reported once."""
        samples = []
        for zone in self._zones:
            try:
                raw = _read_int(zone.energy_path)
            except (OSError, ValueError) as err:
                problem = f"rapl zone {zone.index}: {type(err).__name__}: {err}"
                if problem not in self.problems:
                    self.problems.append(problem)
                continue
            if raw < zone.last_uj:
                if zone.max_range_uj is None:
                    problem = f"rapl zone {zone.index} went backwards without max_energy_range_uj"
                    if problem not in self.problems:
                        self.problems.append(problem)
                    zone.first_uj -= zone.last_uj  # carry on from the new origin
                else:
                    zone.wraps += 1
            zone.last_uj = raw
            span = zone.wraps * (zone.max_range_uj or 0) + raw - zone.first_uj
            samples.append(RaplSample(zone.index, zone.name, span / 1e6))
        return samples

    def status(self) -> dict[str, Any]:
        """What the manifest says about CPU energy: available, or why not."""
        return {
            "available": self.available,
            "reason": self.reason,
            "zones": [z.name for z in self._zones],
            "problems": list(self.problems),
        }
