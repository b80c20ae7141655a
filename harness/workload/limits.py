"""Bounds on the numbers a trace, a generator or a workload file may hold, in one place.

Each is far beyond any real workload and small enough that the arithmetic done with it
(prompt lengths, sums, nanosecond clocks, arrays sized by a count) stays exact, finite and
within memory. A number outside its bound is an error naming the file, line and field.
"""

from __future__ import annotations

MAX_TOKENS = 1_000_000_000
"""A token count: a step's new input, its output, and its whole prompt (agent-loop rule).
Prompt lengths are kept in 32-bit arrays by the stats (limit 4.29e9)."""

MAX_TRACE_TIME_MS = 10 * 365 * 86_400 * 1000.0
"""Ten years in ms: a time from the trace's first record (a session start, a step offset),
a pause or a tool duration."""

MAX_TOOL_SIZE = 1e9
"""A tool call's work size (kernel units); the sandbox bounds the time the work may take."""

MAX_HASH_ID = 2**63 - 1
"""A prefix block id (`hash_ids`): a non-negative 64-bit signed integer."""

MAX_PARALLEL_GROUP = 2**31 - 1
"""A tool call's parallel group number."""

MAX_SEED = 10**18
"""A random seed or prompt salt, in a workload file or on the command line (numpy's
SeedSequence takes any non-negative integer; this is the largest every number type here
accepts)."""

MAX_TIME_SCALE = 1000.0
"""`arrival.time_scale`: trace gaps may be stretched at most this much (0 sends at once)."""

MAX_RATE_PER_S = 1_000_000.0
"""Sessions per second of a Poisson or constant arrival pattern (and of a generator)."""

MAX_CONCURRENCY = 100_000
"""Concurrent sessions of a closed loop and requests in flight."""

MAX_REQUESTS = 10**12
"""A request count: a run's limit, its warm-up, a source's `limit_requests`."""

MAX_DURATION_S = MAX_TRACE_TIME_MS / 1000.0
"""A run's duration limit, a request timeout, an SLO (in its own unit, at most this many s)."""

MAX_SYNTHETIC_SESSIONS = 10_000_000
"""Sessions (or `random` requests) one generator makes; `random` holds its lengths in memory."""

MAX_SYNTHETIC_STEPS = 10_000
"""Turns or steps of one generated session."""

MAX_TOOLS_PER_STEP = 100
"""Tool calls after one generated agent step."""

MAX_TOOL_WORKERS = 256
MAX_LOAD_WORKERS = 256
"""Load-generating worker processes of one run (`--workers`, `client.workers`)."""
"""Tool worker processes a run may start, whatever a workload asks for."""

MAX_SCALE = 1000.0
"""A generator's `scale` (token lengths) and `tool_duration_scale`."""
