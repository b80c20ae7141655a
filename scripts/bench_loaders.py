#!/usr/bin/env python3
"""Benchmark of the trace loaders: `harness workload inspect` of a large file of every format,
beside pandas' own pyarrow-engine read of the same file, in the same run.

Each file is generated from a real trace's shape (the shared Azure and Mooncake traces'
token lengths and gaps, resampled; the repository's small fixtures, repeated with their ids
renamed, for the others). Both readers run as subprocesses, one after the other, on a file
the page cache already holds; seconds are wall time, CPU seconds and peak RSS come from each
process's own rusage. For pandas both the read call and its whole process (imports
included) are given, as `inspect`'s figure is its whole process. Other processes on the
host share its cores: each run says how many cores' worth of CPU they used meanwhile.

Default sizes: Azure and BurstGPT 10 million rows; Mooncake 2 million (pandas holds its
hash-id lists as Python lists, 1.35 GB a million rows); samples of the agent formats, read
a Session at a time: TraceLab 20,000 rounds, Bailian 50,000 turns, the native sessions
format 50,000 sessions, Weka and OpenTelemetry 5,000 records, ShareGPT 5,000 conversations.

    .venv/bin/python scripts/bench_loaders.py                 # Azure at 10 million rows
    .venv/bin/python scripts/bench_loaders.py --quick
    .venv/bin/python scripts/bench_loaders.py --azure-rows 2000000 --formats azure mooncake
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / ".venv" / "bin" / "harness"
SHARED = (ROOT / ".." / "shared" / "traces").resolve()
AZURE = ROOT / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"
MOONCAKE = ROOT / "workloads" / "traces" / "mooncake_conversation_trace.jsonl"
DATA = ROOT / "tests" / "workload" / "data"
TRACELAB = ROOT / "workloads" / "traces" / "tracelab_round_trace_sample.jsonl"
TOKENIZER = ROOT / ".vllm" / "model"
TARGET_RSS_MB = 1024
TIME = "/usr/bin/time"

DEFAULT_ROWS = {
    "azure": 10_000_000,
    "mooncake": 2_000_000,
    "burstgpt": 10_000_000,
    "tracelab": 20_000,
    "weka": 5_000,
    "bailian": 50_000,
    "otel": 5_000,
    "sessions": 50_000,
    "sharegpt": 5_000,
}
QUICK_ROWS = {
    "azure": 500_000,
    "mooncake": 50_000,
    "burstgpt": 100_000,
    "tracelab": 5_000,
    "weka": 1_000,
    "bailian": 10_000,
    "otel": 1_000,
    "sessions": 10_000,
    "sharegpt": 2_000,
}


def _find(*candidates: Path) -> Path:
    """The first of several places a trace may be."""
    for path in candidates:
        if path.is_file():
            return path
    raise SystemExit(f"trace not found: {candidates[0]}")


# --- generated files ----------------------------------------------------------------------


def write_azure(path: Path, rows: int, seed: int = 0) -> None:
    """Rows in the 2023 form: gaps and token counts resampled from the shared trace."""
    src = pd.read_csv(_find(AZURE, SHARED / AZURE.name), engine="pyarrow")
    stamps = src["TIMESTAMP"].astype("int64").to_numpy()
    gaps = np.diff(stamps) // 100 * 100
    rng = np.random.default_rng(seed)
    start = int(stamps[0])
    with path.open("wb") as f:
        f.write(b"TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for done in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - done)
            times = start + np.cumsum(rng.choice(gaps, n))
            start = int(times[-1])
            pick = rng.integers(0, len(src), n)
            seconds = pa.array(times // 1_000_000_000, pa.timestamp("s"))
            whole = pc.strftime(seconds, "%Y-%m-%d %H:%M:%S")
            tick = pc.utf8_lpad(pa.array(times % 1_000_000_000 // 100).cast(pa.string()), 7, "0")
            ctx = pa.array(src["ContextTokens"].to_numpy()[pick]).cast(pa.string())
            gen = pa.array(src["GeneratedTokens"].to_numpy()[pick]).cast(pa.string())
            line = pc.binary_join_element_wise(whole, ".", tick, ",", ctx, ",", gen, "\n", "")
            end = int(np.frombuffer(line.buffers()[1], dtype=np.int32)[len(line)])
            f.write(line.buffers()[2].to_pybytes()[:end])


def write_mooncake(path: Path, rows: int) -> None:
    """The shared Mooncake trace repeated, each copy an hour later, block ids kept apart."""
    records = [orjson.loads(line) for line in _find(MOONCAKE, SHARED / MOONCAKE.name).open("rb")]
    top = max(max(r["hash_ids"], default=0) for r in records) + 1
    with path.open("wb") as f:
        for i in range(rows):
            rec = records[i % len(records)]
            copy = i // len(records)
            out = {
                "timestamp": rec["timestamp"] + copy * 3_600_000,
                "input_length": rec["input_length"],
                "output_length": rec["output_length"],
                "hash_ids": [h + copy * top for h in rec["hash_ids"]],
            }
            f.write(orjson.dumps(out) + b"\n")


def write_burstgpt(path: Path, rows: int, seed: int = 0) -> None:
    """Third-release rows: conversations whose prompts grow by what each turn appended, and
    API-log rows without a Session ID, about 2 requests a second."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(0.5, rows)).round(3)
    api = rng.random(rows) < 0.3
    sid = np.where(api, -1, rng.integers(0, max(rows // 4, 1), rows))
    response = rng.integers(1, 600, rows)
    grown = rng.integers(10, 400, rows)
    by_session = pd.DataFrame({"sid": sid, "grown": grown, "response": response})
    groups = by_session.groupby("sid", sort=False)
    # a turn's prompt: what the turns before it appended and answered, and its own growth
    earlier = groups["grown"].cumsum() + groups["response"].cumsum() - response
    request = np.where(api, rng.integers(10, 4000, rows), earlier.to_numpy())
    frame = pd.DataFrame(
        {
            "Timestamp": times,
            "Session ID": np.where(api, "", pd.Series(sid).astype(str).radd("s")),
            "Elapsed time": rng.integers(1, 60, rows),
            "Model": np.where(rng.random(rows) < 0.8, "ChatGPT", "GPT-4"),
            "Request tokens": request,
            "Response tokens": response,
            "Total tokens": request + response,
            "Log Type": np.where(api, "API log", "Conversation log"),
        }
    )
    frame.to_csv(path, index=False)


def _repeat_lines(
    source: Path, path: Path, rows: int, key: str, rename: Callable[[Any, int], Any]
) -> None:
    """JSON lines of `source` repeated until `rows`, each copy's `key` renamed."""
    records = [orjson.loads(line) for line in source.open("rb") if line.strip()]
    with path.open("wb") as f:
        for i in range(rows):
            rec = dict(records[i % len(records)])
            rec[key] = rename(rec[key], i // len(records))
            f.write(orjson.dumps(rec) + b"\n")


def write_sessions(path: Path, rows: int) -> None:
    _repeat_lines(DATA / "sessions_small.jsonl", path, rows, "session_id", lambda v, k: f"{v}-{k}")


def write_tracelab(path: Path, rows: int) -> None:
    source = _find(TRACELAB, SHARED / "tracelab" / "round_trace_sample.jsonl")
    _repeat_lines(source, path, rows, "session_id", lambda v, k: f"{v}-{k}")


def write_weka(path: Path, rows: int) -> None:
    _repeat_lines(DATA / "weka_small.jsonl", path, rows, "id", lambda v, k: f"{v}-{k}")


def write_bailian(path: Path, rows: int) -> None:
    """The fixture's turns repeated, each copy later than the last, its chat ids apart."""
    records = [orjson.loads(line) for line in (DATA / "bailian_small.jsonl").open("rb")]
    top = max(max(r["chat_id"], r["parent_chat_id"]) for r in records) + 1
    span = max(r["timestamp"] for r in records) + 1
    with path.open("wb") as f:
        for i in range(rows):
            copy = i // len(records)
            rec = dict(records[i % len(records)])
            rec["chat_id"] += copy * top
            if rec["parent_chat_id"] >= 0:
                rec["parent_chat_id"] += copy * top
            rec["timestamp"] += copy * span
            f.write(orjson.dumps(rec) + b"\n")


def write_otel(path: Path, rows: int) -> None:
    """The fixture's OTLP export lines repeated, each copy's trace and span ids renamed."""
    lines = [line for line in (DATA / "otel_small.jsonl").read_text().splitlines() if line]
    with path.open("w") as f:
        for i in range(rows):
            record = orjson.loads(lines[i % len(lines)])
            tag = f"{i // len(lines):08x}"
            for resource in record["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    for span in scope["spans"]:
                        for key in ("traceId", "spanId", "parentSpanId"):
                            if span.get(key):
                                span[key] = tag + span[key][len(tag) :]
            f.write(orjson.dumps(record).decode() + "\n")


def write_sharegpt(path: Path, rows: int) -> None:
    items = json.loads((DATA / "sharegpt_small.json").read_text())
    out = [dict(items[i % len(items)], id=f"c{i}") for i in range(rows)]
    path.write_bytes(orjson.dumps(out))


WRITERS: dict[str, tuple[Callable[[Path, int], None], str]] = {
    "azure": (write_azure, "csv"),
    "mooncake": (write_mooncake, "jsonl"),
    "burstgpt": (write_burstgpt, "csv"),
    "tracelab": (write_tracelab, "jsonl"),
    "weka": (write_weka, "jsonl"),
    "bailian": (write_bailian, "jsonl"),
    "otel": (write_otel, "jsonl"),
    "sessions": (write_sessions, "jsonl"),
    "sharegpt": (write_sharegpt, "json"),
}
PANDAS_READ = {
    "csv": 'pd.read_csv(p, engine="pyarrow")',
    "jsonl": 'pd.read_json(p, lines=True, engine="pyarrow")',
    "json": "pd.read_json(p)",  # a JSON list: pandas has no pyarrow engine for it
}


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Proc:
    """One subprocess: wall seconds, CPU seconds, peak RSS, exit status and stdout."""

    wall_s: float
    cpu_s: float
    rss_mb: float
    status: int
    out: str
    other_cores: float | None


def machine_busy_s() -> float:
    """CPU seconds every core of the host has spent busy so far (all but idle and iowait)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def run(cmd: Sequence[str]) -> Proc:
    """Run a command to its end under /usr/bin/time, whose rusage of it gives CPU time and
    peak RSS (a child forked from this process would inherit this process's peak RSS)."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as usage:
        busy = machine_busy_s()
        start = time.perf_counter()
        timed = [TIME, "-f", "%U %S %M", "-o", usage.name, *cmd]
        status = subprocess.run(timed, stdout=out, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - start
        busy = machine_busy_s() - busy
        out.seek(0)
        text = out.read().decode(errors="replace")
        user_s, sys_s, rss_kb = usage.read().split()[-3:]
    cpu = float(user_s) + float(sys_s)
    other = max(busy - cpu, 0.0) / wall if wall > 0 else None
    return Proc(wall, cpu, int(rss_kb) / 1024, status, text, other)


def inspect(path: Path, fmt: str) -> Proc:
    cmd = [str(HARNESS), "workload", "inspect", str(path), "--format", fmt, "--json"]
    if fmt == "sharegpt":
        cmd += ["--tokenizer", str(TOKENIZER)]
    return run(cmd)


def pandas_read(path: Path, kind: str) -> Proc:
    code = (
        "import json, sys, time; import pandas as pd; p = sys.argv[1]; t = time.perf_counter(); "
        f"df = {PANDAS_READ[kind]}; "
        "print(json.dumps({'rows': len(df), 'read_s': time.perf_counter() - t}))"
    )
    return run([sys.executable, "-c", code, str(path)])


@dataclass
class Row:
    fmt: str
    rows: int
    file_mb: float
    inspect_s: float | None
    inspect_cpu_s: float | None
    inspect_rss_mb: float | None
    inspect_requests: int | None
    pandas_read_s: float | None
    pandas_process_s: float | None
    pandas_cpu_s: float | None
    pandas_rss_mb: float | None
    pandas_rows: int | None
    other_cores: float | None
    note: str


def bench_one(fmt: str, rows: int, folder: Path, repeat: int) -> Row:
    writer, kind = WRITERS[fmt]
    path = folder / f"{fmt}_{rows}.{kind}"
    if not path.exists():
        print(f"  writing {path.name} ...", flush=True)
        writer(path, rows)
    path.read_bytes() if path.stat().st_size < 2 << 30 else None  # into the page cache
    best: Proc | None = None
    panda: Proc | None = None
    for _ in range(repeat):
        got = inspect(path, fmt)
        if got.status != 0:
            return _failed(fmt, rows, path, f"inspect failed: {got.out.strip()[-300:]}")
        best = got if best is None or got.wall_s < best.wall_s else best
        read = pandas_read(path, kind)
        panda = read if panda is None or read.wall_s < panda.wall_s else panda
    assert best is not None and panda is not None
    stats = json.loads(best.out)
    note = ""
    pandas_fig: dict[str, Any] = {}
    if panda.status == 0:
        pandas_fig = json.loads(panda.out.strip().splitlines()[-1])
    else:
        note = f"pandas failed: {panda.out.strip().splitlines()[-1][:120]}"
    others = [p.other_cores for p in (best, panda) if p.other_cores is not None]
    return Row(
        fmt=fmt,
        rows=rows,
        file_mb=path.stat().st_size / 2**20,
        inspect_s=best.wall_s,
        inspect_cpu_s=best.cpu_s,
        inspect_rss_mb=best.rss_mb,
        inspect_requests=stats["requests"],
        pandas_read_s=pandas_fig.get("read_s"),
        pandas_process_s=panda.wall_s if panda.status == 0 else None,
        pandas_cpu_s=panda.cpu_s if panda.status == 0 else None,
        pandas_rss_mb=panda.rss_mb if panda.status == 0 else None,
        pandas_rows=pandas_fig.get("rows"),
        other_cores=max(others) if others else None,
        note=note or ("pandas: no pyarrow engine for a JSON list" if kind == "json" else ""),
    )


def _failed(fmt: str, rows: int, path: Path, note: str) -> Row:
    size = path.stat().st_size / 2**20
    return Row(fmt, rows, size, None, None, None, None, None, None, None, None, None, None, note)


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "pandas": pd.__version__,
    }


def fmt(value: float | None, spec: str = ",.2f") -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small files (a smoke test)")
    parser.add_argument("--formats", nargs="+", choices=list(WRITERS), default=list(WRITERS))
    for name in WRITERS:
        parser.add_argument(f"--{name}-rows", type=int, default=None, help=f"rows of {name}")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest kept")
    parser.add_argument("--dir", type=Path, default=None, help="where files go (kept)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    sizes = QUICK_ROWS if args.quick else DEFAULT_ROWS
    host = machine()
    print(
        f"machine: {host['cpu_model']}, {host['cores_usable']} usable cores, "
        f"{host['memory_gb']} GB; load average at start {host['load_average_at_start']}; "
        f"pyarrow {host['pyarrow']}, pandas {host['pandas']}"
    )
    results: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-loaders-") as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in args.formats:
            rows = getattr(args, f"{name}_rows") or sizes[name]
            print(f"{name}: {rows:,} rows", flush=True)
            results.append(bench_one(name, rows, folder, args.repeat))
    headers = [
        "format", "rows", "MB", "inspect s", "inspect CPU s", "inspect RSS MB", "pandas read s",
        "pandas process s", "pandas CPU s", "pandas RSS MB", "inspect/pandas read",
        "other cores", "note",
    ]  # fmt: skip
    table = [
        [
            r.fmt,
            f"{r.rows:,}",
            fmt(r.file_mb, ",.0f"),
            fmt(r.inspect_s),
            fmt(r.inspect_cpu_s),
            fmt(r.inspect_rss_mb, ",.0f"),
            fmt(r.pandas_read_s),
            fmt(r.pandas_process_s),
            fmt(r.pandas_cpu_s),
            fmt(r.pandas_rss_mb, ",.0f"),
            fmt(r.inspect_s / r.pandas_read_s if r.inspect_s and r.pandas_read_s else None),
            fmt(r.other_cores, ".1f"),
            r.note,
        ]
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for r in results:
        if r.fmt == "azure" and r.inspect_s is not None and r.pandas_read_s is not None:
            fast = r.inspect_s <= r.pandas_read_s
            small = (r.inspect_rss_mb or 0) < TARGET_RSS_MB
            print(
                f"azure target (inspect no slower than pandas' read, under {TARGET_RSS_MB} MB):"
                f" {'met' if fast and small else 'missed'}"
            )
    print(
        "other cores: cores' worth of CPU the host's other processes used during the runs "
        f"(of {host['cores_usable']}); figures taken while they ran are slower than alone"
    )
    if args.json:
        args.json.write_text(json.dumps({"machine": host, "rows": [asdict(r) for r in results]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
