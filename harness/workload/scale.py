"""Token scale: every token length of a session (inputs, outputs, kept prefixes, hash-block
sizes) times a factor, so a real trace's shape runs on a small server. Times are unchanged."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from harness.workload.model import Session, Step


def scaled_tokens(tokens: int, factor: float, least: int = 0) -> int:
    """`tokens` × `factor`, rounded half to even; a length above 0 stays at least `least`."""
    value = round(tokens * factor)
    return max(least, value) if tokens > 0 else value


def scale_step(step: Step, factor: float) -> Step:
    """One step with its token lengths scaled (an output stays at least one token)."""
    kept = step.kept_prefix_tokens
    return replace(
        step,
        new_input_tokens=scaled_tokens(step.new_input_tokens, factor),
        output_tokens=scaled_tokens(step.output_tokens, factor, least=1),
        kept_prefix_tokens=None if kept is None else scaled_tokens(kept, factor),
        hash_block_tokens=scaled_tokens(step.hash_block_tokens, factor, least=1),
    )


def scale_session(session: Session, factor: float) -> Session:
    """A session with every step's token lengths scaled by `factor`."""
    if factor == 1.0:
        return session
    return replace(session, steps=tuple(scale_step(s, factor) for s in session.steps))


def scale_sessions(sessions: Iterable[Session], factor: float) -> Iterator[Session]:
    """Stream sessions scaled by `factor`; at 1 the stream itself (a columnar trace keeps
    its fast path for `workload_stats`)."""
    if factor == 1.0:
        return iter(sessions)
    return (scale_session(session, factor) for session in sessions)
