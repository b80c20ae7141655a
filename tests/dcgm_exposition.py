"""A DCGM exporter's /metrics page for tests: the exposition text exactly as dcgm-exporter
writes it (a # HELP and a # TYPE line per field, then one sample per GPU with its gpu, UUID,
pci_bus_id, device, modelName and Hostname labels, and pod labels in Kubernetes mode),
served over real HTTP by a local server in a thread, with readings a test changes between
scrapes (a counter reset, a metric that disappears, the exporter going down)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DRIVER = "580.105.08"
BLANK_INT64 = 9223372036854775794
"""What dcgm-exporter prints for a field DCGM has no value of (DCGM_INT64_NOT_SUPPORTED)."""

FIELDS: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
    ),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
)
"""The default counters' fields in dcgm-exporter's order (etc/default-counters.csv)."""


@dataclass
class ServedGpu:
    """One GPU's readings as the exporter will print them next."""

    uuid: str
    index: int
    power_w: float
    energy_mj: int
    util_pct: int = 87
    fb_used_mib: int = 71232
    temp_c: int | None = 41
    """None: printed as DCGM's blank value."""
    pod: str | None = None
    namespace: str | None = None

    def value(self, name: str) -> str:
        """The sample's value as dcgm-exporter formats it (floats as Go's %f)."""
        values: dict[str, str] = {
            "DCGM_FI_DEV_SM_CLOCK": "1980",
            "DCGM_FI_DEV_MEM_CLOCK": "2619",
            "DCGM_FI_DEV_MEMORY_TEMP": str(BLANK_INT64),
            "DCGM_FI_DEV_GPU_TEMP": str(BLANK_INT64 if self.temp_c is None else self.temp_c),
            "DCGM_FI_DEV_POWER_USAGE": f"{self.power_w:f}",
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": str(self.energy_mj),
            "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "0",
            "DCGM_FI_DEV_GPU_UTIL": str(self.util_pct),
            "DCGM_FI_DEV_MEM_COPY_UTIL": "31",
            "DCGM_FI_DEV_XID_ERRORS": "0",
            "DCGM_FI_DEV_FB_FREE": str(81559 - self.fb_used_mib),
            "DCGM_FI_DEV_FB_USED": str(self.fb_used_mib),
        }
        return values[name]


@dataclass
class DcgmExposition:
    """A node's exporter: its GPUs, the fields it leaves out, whether it answers (HTTP status),
    and a hook run on every scrape before the page is written (to step readings)."""

    gpus: list[ServedGpu]
    host: str = "node-a"
    model: str = "NVIDIA H100 80GB HBM3"
    hidden: set[str] = field(default_factory=set)
    status: int = 200
    auth: str | None = None
    """An `Authorization` value every scrape must carry (an exporter behind basic auth)."""
    on_scrape: Callable[[DcgmExposition], None] | None = None
    scrapes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _labels(self, gpu: ServedGpu) -> str:
        parts = [
            f'gpu="{gpu.index}"',
            f'UUID="{gpu.uuid}"',
            f'pci_bus_id="00000000:{0x53 + 0x11 * gpu.index:02X}:00.0"',
            f'device="nvidia{gpu.index}"',
            f'modelName="{self.model}"',
            f'Hostname="{self.host}"',
            f'DCGM_FI_DRIVER_VERSION="{DRIVER}"',
        ]
        if gpu.pod is not None:
            parts += [f'pod="{gpu.pod}"', f'namespace="{gpu.namespace}"', 'container="vllm"']
        return ",".join(parts)

    def text(self) -> str:
        """The page as the exporter writes it now."""
        lines: list[str] = []
        for name, kind, help_text in FIELDS:
            if name in self.hidden:
                continue
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{{{self._labels(g)}}} {g.value(name)}" for g in self.gpus)
        return "\n".join(lines) + "\n"

    def page(self) -> tuple[int, str]:
        """One scrape: the hook, then the status and body."""
        with self.lock:
            self.scrapes += 1
            if self.on_scrape is not None:
                self.on_scrape(self)
            return self.status, self.text() if self.status == 200 else "exporter error\n"


@contextmanager
def serve(exposition: DcgmExposition) -> Iterator[str]:
    """Serve the exposition at http://127.0.0.1:PORT/metrics (yielded) until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            if exposition.auth is not None and self.headers.get("Authorization") != exposition.auth:
                self.send_error(401)
                return
            status, body = exposition.page()
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: no line per scrape on stderr."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="dcgm-exposition", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
