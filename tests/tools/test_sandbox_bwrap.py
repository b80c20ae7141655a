"""The bubblewrap sandbox's probe: a success stands, a failure is tried again after a while."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from harness.tools import sandbox_bwrap

BWRAP = "/usr/bin/bwrap"


@dataclass
class Trials:
    """The outcomes the trial program gives, in order (None: it worked), and the clock."""

    outcomes: list[str | None] = field(default_factory=list)
    now: float = 1000.0

    def trial(self, bwrap: str) -> str | None:
        return self.outcomes.pop(0)


@pytest.fixture
def trials(monkeypatch: pytest.MonkeyPatch) -> Trials:
    """The probe's trials and clock under the test's control, its memory empty."""
    t = Trials()
    monkeypatch.setattr(sandbox_bwrap, "_probe_ok", set())
    monkeypatch.setattr(sandbox_bwrap, "_probe_failed", {})
    monkeypatch.setattr(sandbox_bwrap, "_clock", lambda: t.now)
    monkeypatch.setattr(sandbox_bwrap, "_trial", t.trial)
    return t


def test_a_transient_failure_is_tried_again_after_the_retry_interval(trials: Trials) -> None:
    trials.outcomes += ["sandbox setup (uid): Resource temporarily unavailable", None]
    assert sandbox_bwrap.probe(BWRAP) is not None
    trials.now += sandbox_bwrap.PROBE_RETRY_S / 2
    assert sandbox_bwrap.probe(BWRAP) is not None  # within the interval: no new trial
    assert trials.outcomes == [None]
    trials.now += sandbox_bwrap.PROBE_RETRY_S
    assert sandbox_bwrap.probe(BWRAP) is None
    assert trials.outcomes == []


def test_a_success_stands_without_another_trial(trials: Trials) -> None:
    trials.outcomes += [None, "would fail now"]
    assert sandbox_bwrap.probe(BWRAP) is None
    trials.now += 10 * sandbox_bwrap.PROBE_RETRY_S
    assert sandbox_bwrap.probe(BWRAP) is None
    assert trials.outcomes == ["would fail now"]
