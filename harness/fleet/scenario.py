"""Fleet scenarios: a stated demand (tokens, requests or sessions per day, or a chatbot/agent
mix), how it peaks, how much headroom is planned, the facility (PUE, servers) and, for the
inverse question, a fixed facility power. Unknown keys and bad values are errors naming the
file and the dotted key; nothing has a silent default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.config_files import Count, FiniteFloat, error_lines, read_yaml, validate
from harness.errors import ConfigError
from harness.fleet.shape import ModelShape
from harness.suggest import close_files, did_you_mean


class _Strict(BaseModel):
    """Base of every scenario section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Mix(_Strict):
    """Daily users, a chatbot user's tokens per day, and a share of users who run agents that
    use `agent_token_multiplier` times a chatbot user's tokens."""

    users_per_day: FiniteFloat = Field(gt=0)
    chatbot_tokens_per_user_day: FiniteFloat = Field(gt=0)
    agent_share: FiniteFloat = Field(ge=0, le=1)
    agent_token_multiplier: FiniteFloat = Field(gt=0)
    agent_sessions_per_user_day: FiniteFloat | None = Field(default=None, ge=0)

    def tokens_per_user_day(self) -> float:
        """Mean tokens per user per day over the mix."""
        share = self.agent_share
        return self.chatbot_tokens_per_user_day * (1 - share + share * self.agent_token_multiplier)

    def tokens_per_day(self) -> float:
        """users × chatbot tokens × ((1 − agent share) + agent share × multiplier)."""
        return self.users_per_day * self.tokens_per_user_day()

    def sessions_per_day(self) -> float | None:
        """Agent sessions per day (agent users × sessions each), if sessions per user are given."""
        if self.agent_sessions_per_user_day is None:
            return None
        return self.users_per_day * self.agent_share * self.agent_sessions_per_user_day


class Sweep(_Strict):
    """One scenario parameter (dotted key, e.g. `mix.agent_token_multiplier`) over values."""

    parameter: str = Field(min_length=1)
    values: list[FiniteFloat] = Field(min_length=1)
    label: str | None = None


_DEMANDS = ("tokens_per_day", "requests_per_day", "sessions_per_day", "mix")


class Scenario(_Strict):
    """A whole scenario file; see the README's "Fleet model" for each key."""

    name: str = Field(min_length=1)
    description: str = ""
    tokens_per_day: FiniteFloat | None = Field(default=None, ge=0)
    requests_per_day: FiniteFloat | None = Field(default=None, ge=0)
    tokens_per_request: FiniteFloat | None = Field(default=None, gt=0)
    sessions_per_day: FiniteFloat | None = Field(default=None, ge=0)
    tokens_per_session: FiniteFloat | None = Field(default=None, gt=0)
    mix: Mix | None = None
    workload_shape: str | None = None
    peak_to_average: FiniteFloat = Field(ge=1)
    headroom: FiniteFloat = Field(gt=0, le=1)
    pue: FiniteFloat = Field(ge=1)
    gpus_per_server: Count = Field(ge=1)
    server_other_w: FiniteFloat = Field(ge=0)
    cpu_cores_per_server: Count | None = Field(default=None, ge=1)
    cpu_target_utilization: FiniteFloat | None = Field(default=None, gt=0, le=1)
    tool_cpu_s_per_session: FiniteFloat | None = Field(default=None, ge=0)
    model: ModelShape | None = None
    flops_utilization: FiniteFloat | None = Field(default=None, gt=0, le=1)
    facility_power_mw: FiniteFloat | None = Field(default=None, gt=0)
    sweep: Sweep | None = None
    assumptions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_demand(self) -> Scenario:
        given = [k for k in _DEMANDS if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one demand, not {' and '.join(repr(k) for k in given)}")
        if not given and self.facility_power_mw is None:
            raise ValueError(
                "give a demand ('tokens_per_day', 'requests_per_day' with "
                "'tokens_per_request', 'sessions_per_day' with 'tokens_per_session', or "
                "'mix') or a 'facility_power_mw' for the inverse question"
            )
        if self.requests_per_day is not None and self.tokens_per_request is None:
            raise ValueError("'requests_per_day' needs 'tokens_per_request'")
        if self.sessions_per_day is not None and self.tokens_per_session is None:
            raise ValueError("'sessions_per_day' needs 'tokens_per_session'")
        if self.mix is not None and (self.tokens_per_session or self.tokens_per_request):
            raise ValueError("'mix' sets tokens per user; drop 'tokens_per_session/request'")
        return self

    def demand_tokens_per_day(self) -> float | None:
        """Input+output tokens per day the demand states, or None for an inverse-only scenario."""
        if self.tokens_per_day is not None:
            return self.tokens_per_day
        if self.requests_per_day is not None and self.tokens_per_request is not None:
            return self.requests_per_day * self.tokens_per_request
        if self.sessions_per_day is not None and self.tokens_per_session is not None:
            return self.sessions_per_day * self.tokens_per_session
        if self.mix is not None:
            return self.mix.tokens_per_day()
        return None

    def demand_sessions_per_day(self) -> float | None:
        """Agent sessions per day: stated, from the mix, or tokens / tokens_per_session."""
        if self.sessions_per_day is not None:
            return self.sessions_per_day
        if self.mix is not None:
            return self.mix.sessions_per_day()
        if self.tokens_per_day is not None and self.tokens_per_session is not None:
            return self.tokens_per_day / self.tokens_per_session
        return None

    def demand_basis(self) -> str:
        """How tokens per day follow from the scenario's keys, in words."""
        if self.tokens_per_day is not None:
            return "tokens_per_day as stated"
        if self.requests_per_day is not None:
            return "requests_per_day × tokens_per_request"
        if self.sessions_per_day is not None:
            return "sessions_per_day × tokens_per_session"
        if self.mix is not None:
            return (
                "mix.users_per_day × mix.chatbot_tokens_per_user_day × ((1 − mix.agent_share) "
                "+ mix.agent_share × mix.agent_token_multiplier)"
            )
        return "no demand: what facility_power_mw serves (inverse)"


def with_value(scenario: Scenario, parameter: str, value: float) -> Scenario:
    """A copy of `scenario` (without its sweep) with the dotted numeric `parameter` set to
    `value`, validated again; ValueError for a parameter that is not a number of the scenario."""
    data: dict[str, Any] = scenario.model_dump(exclude={"sweep"})
    node = data
    keys = parameter.split(".")
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            raise ValueError(f"the scenario has no section '{key}' for '{parameter}'")
        node = child
    leaf = keys[-1]
    if leaf not in node:
        raise ValueError(f"'{parameter}' is not a scenario key")
    current = node[leaf]
    if isinstance(current, bool) or not isinstance(current, int | float | None):
        raise ValueError(f"'{parameter}' is not a number")
    node[leaf] = value
    return Scenario.model_validate(data)


def sweep_points(scenario: Scenario) -> list[tuple[float, Scenario]]:
    """(value, scenario with that value) for each value of the scenario's sweep (none: [])."""
    if scenario.sweep is None:
        return []
    return [(v, with_value(scenario, scenario.sweep.parameter, v)) for v in scenario.sweep.values]


def _check_sweep(scenario: Scenario, path: Path | str) -> None:
    """Every sweep value must give a valid scenario; errors name `sweep.values.I`."""
    sweep = scenario.sweep
    if sweep is None:
        return
    for i, value in enumerate(sweep.values):
        try:
            with_value(scenario, sweep.parameter, value)
        except ValidationError as err:
            detail = "; ".join(error_lines(err))
            raise ConfigError(
                f"{path}: key 'sweep.values.{i}': {sweep.parameter} = {value:g} is invalid: "
                f"{detail}"
            ) from None
        except ValueError as err:
            raise ConfigError(f"{path}: key 'sweep.parameter': {err}") from None


def parse_scenario(data: Any, path: Path | str) -> Scenario:
    """Validate a mapping read from `path` (sweep values included); without a `name`, the
    scenario is named after its file (`dc-a.yaml` is `dc-a`)."""
    if isinstance(data, dict) and "name" not in data:
        data = {"name": Path(path).stem, **data}
    scenario = validate(Scenario, data, path)
    _check_sweep(scenario, path)
    return scenario


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    if not path.is_file():
        hint = did_you_mean(close_files(path, [Path("scenarios")]))
        raise ConfigError(f"{path}: no such scenario file{hint}")
    return parse_scenario(read_yaml(path, "scenario"), path)
