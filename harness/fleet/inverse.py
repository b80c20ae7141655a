"""The inverse question: how many tokens, requests, users or agent sessions per day a fixed
facility power serves. GPUs are bought until peak facility power reaches the budget; agent
sessions are further bounded by the cores the GPU servers bring for tool work."""

from __future__ import annotations

from typing import Any

from harness.fleet.figures import S_PER_DAY, W_PER_MW, Figures, floor_count
from harness.fleet.profile import HardwareProfile
from harness.fleet.scenario import Scenario

INVERSE_ASSUMPTIONS: tuple[str, ...] = (
    "inverse: facility_power_mw is the facility's peak draw; whole servers of gpus_per_server "
    "GPUs are added while (gpus × busy_w + servers × server_other_w) × pue fits in it",
    "inverse: at peak every GPU serves headroom × capacity_tok_s; the daily average is that "
    "peak divided by peak_to_average",
    "inverse: agent tools run on the GPU servers' host CPUs (no CPU-only servers are added)",
)


def sessions_per_token(scenario: Scenario) -> float | None:
    """Agent sessions per token of demand, from the scenario's shape (None if it has none)."""
    if scenario.tokens_per_session is not None:
        return 1.0 / scenario.tokens_per_session
    mix = scenario.mix
    if mix is not None and mix.agent_sessions_per_user_day is not None:
        return mix.agent_share * mix.agent_sessions_per_user_day / mix.tokens_per_user_day()
    return None


def _cpu_bound(
    scenario: Scenario, profile: HardwareProfile, servers: int, out: Figures
) -> float | None:
    """Sessions per day the servers' cores can run tools for, or None with the reason."""
    tool_s = scenario.tool_cpu_s_per_session
    if tool_s is None:
        tool_s = profile.tool_cpu_s_per_session
    if tool_s is None:
        reason = "neither scenario nor profile gives tool_cpu_s_per_session"
    elif tool_s == 0:
        reason = "tool_cpu_s_per_session is 0: tools do not bound sessions"
    elif scenario.cpu_cores_per_server is None:
        reason = "scenario gives no cpu_cores_per_server"
    elif scenario.cpu_target_utilization is None:
        reason = "scenario gives no cpu_target_utilization"
    else:
        cores = servers * scenario.cpu_cores_per_server
        sessions = cores * scenario.cpu_target_utilization * S_PER_DAY / tool_s
        out.put("sessions_per_day_cpu_bound", sessions)
        return sessions
    out.missing("sessions_per_day_cpu_bound", reason)
    return None


def inverse_figures(scenario: Scenario, profile: HardwareProfile) -> dict[str, Any] | None:
    """What `scenario.facility_power_mw` serves on `profile`'s hardware; None if no budget."""
    budget_mw = scenario.facility_power_mw
    if budget_mw is None:
        return None
    out = Figures()
    out.put("facility_power_mw", budget_mw)
    it_budget_mw = out.put("it_power_budget_mw", budget_mw / scenario.pue)
    keys: tuple[str, ...] = ("servers", "gpus", "tokens_per_day", "sessions_per_day_gpu_bound")
    keys += ("sessions_per_day_cpu_bound", "sessions_per_day")
    busy, cap = profile.busy_w, profile.capacity_tok_s
    if busy is None or cap is None:
        reason = profile.why_missing("busy_w" if busy is None else "capacity_tok_s")
        for key in keys:
            out.missing(key, reason)
        out.put("binding", None, reason)
        return out.as_dict()
    server_peak_w = out.put(
        "server_peak_w", scenario.gpus_per_server * busy + scenario.server_other_w
    )
    servers = out.put("servers", floor_count(it_budget_mw * W_PER_MW / server_peak_w))
    gpus = out.put("gpus", servers * scenario.gpus_per_server)
    tokens_gpu = gpus * cap * scenario.headroom / scenario.peak_to_average * S_PER_DAY
    ratio = sessions_per_token(scenario)
    no_shape = "scenario gives no tokens_per_session (or mix.agent_sessions_per_user_day)"
    gpu_sessions = None if ratio is None else tokens_gpu * ratio
    out.put("sessions_per_day_gpu_bound", gpu_sessions, no_shape)
    cpu_sessions = _cpu_bound(scenario, profile, servers, out)
    tokens = tokens_gpu
    binding = "gpu"
    if gpu_sessions is None:
        out.missing("sessions_per_day", no_shape)
    elif cpu_sessions is not None and cpu_sessions < gpu_sessions:
        assert ratio is not None
        binding = "cpu"
        out.put("sessions_per_day", cpu_sessions)
        tokens = cpu_sessions / ratio
    else:
        out.put("sessions_per_day", gpu_sessions)
    out.put("binding", binding)
    out.put("tokens_per_day", tokens)
    if scenario.tokens_per_request is not None:
        out.put("requests_per_day", tokens / scenario.tokens_per_request)
    if scenario.mix is not None:
        out.put("users_per_day", tokens / scenario.mix.tokens_per_user_day())
    return out.as_dict()
