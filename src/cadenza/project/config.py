"""``cadenza.toml``: the schema, loading, and one-line errors.

Every command loads the project through :func:`load_project`, so a bad file is caught before any
work starts. The schema is documented in ``docs/config.md``.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "cadenza.toml"
PROMPT_NAME = "SYSTEM_PROMPT.md"
SEED_LIMIT = 1_000_000  # training seeds are 0 .. 999,999; held-out evaluation seeds start at 1,000,003
MAX_NUMBER = 10**12  # no number in cadenza.toml means anything beyond this size
MAX_TEXT = 2000  # longest goal / name-like text accepted


class ConfigError(Exception):
    """A project or config problem, reported to the user as one line (exit code 2)."""


def _toml_type(v: Any) -> str:
    return {bool: "a boolean", str: "a string", int: "an integer", float: "a float", list: "an array",
            dict: "a table"}.get(type(v), type(v).__name__)


def _is_number(annotation: Any) -> bool:
    """``int``, ``float`` or an optional / union of them (not ``bool``)."""
    if annotation in (int, float):
        return True
    if get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(a in (int, float) for a in args)
    return False


class _Section(BaseModel):
    # NaN and infinity mean nothing anywhere in cadenza.toml (docs/config.md)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_scalar(cls, v: Any, info: ValidationInfo) -> Any:
        """A number key takes a TOML number (not ``true``, not ``"1"``, which pydantic would convert; nothing
        huge), a boolean key a TOML boolean (not ``1`` or ``"yes"``)."""
        field = cls.model_fields.get(info.field_name or "")
        if field is None:
            return v
        if field.annotation is bool and not isinstance(v, bool):
            raise ValueError(f"Input should be a valid boolean (true or false), not {_toml_type(v)}")
        if not _is_number(field.annotation) or v is None:
            return v
        if isinstance(v, (bool, str)):
            what = "integer" if field.annotation is int else "number"
            raise ValueError(f"Input should be a valid {what}, not {_toml_type(v)}")
        if isinstance(v, (int, float)) and v == v and abs(v) != float("inf") and abs(v) > MAX_NUMBER:
            raise ValueError(f"expected a number no larger than {MAX_NUMBER:.0e} in size")
        return v


Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class ProjectSection(_Section):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""


class PerturbationSpec(_Section):
    """One real-simulator perturbation: what it changes and how far at level 1.0 (docs/real.md).

    Each episode draws ``level * U(0.5, 1) * scale`` (latency: ``round(level * U(0, 1) * scale)``
    steps). ``target`` is a comma-separated list of names or shell-style patterns (bodies for mass
    and push, geoms for friction, joints for damping / joint_friction / bias_torque, actuators or the
    joints they drive for actuator_gain, observation indices such as ``"0:4,8"`` for obs_noise);
    empty means all of them (the root body for push).
    """

    kind: Literal["mass", "friction", "actuator_gain", "damping", "joint_friction", "bias_torque",
                  "obs_noise", "latency", "push"]
    target: str = ""
    scale: float = Field(0.0, ge=0.0, le=1e6)

    @model_validator(mode="after")
    def _share_below_one(self) -> PerturbationSpec:
        if self.kind in ("friction", "actuator_gain") and self.scale >= 1.0:
            raise ValueError(f"{self.kind}: scale is the share lost at level 1.0 and must be below 1 "
                             f"(got {self.scale})")
        return self


class RealTaskSection(_Section):
    """``[task.real]``: the simulator task and base that ``--real`` runs (docs/real.md)."""

    task: str = ""  # "builtin:reacher" | "builtin:rescue-dog" | a Gymnasium id | "module:attr" env factory
    base: str = ""  # base policy for the real task (same forms as [base].source)
    success: str = ""  # optional "module:attr" function (obs, info) -> bool; else info["success"]
    collision: str = ""  # optional "module:attr" function (obs, info) -> bool; else info["collision"]
    env_kwargs: dict[str, float | int | str | bool] = Field(default_factory=dict)
    perturbations: list[PerturbationSpec] = Field(default_factory=list)  # empty: the built-in task's own

    @field_validator("success", "collision")
    @classmethod
    def _entry_point(cls, v: str) -> str:
        if v and not re.fullmatch(r"[\w.]+:[\w.]+", v):
            raise ValueError("expected 'package.module:function'")
        return v


class TaskSection(_Section):
    id: str = "proxy:rescue-dog"
    level: Unit = 1.0  # target perturbation level (curriculum ends here; eval runs here)
    num_envs: int = Field(64, ge=1, le=65536)
    # when a proxy episode counts as a success: "reach" = inside the goal radius, "stop" = inside it and
    # slower than the stop speed (docs/proxy.md); training, evaluation and scoring all use it
    arrival: Literal["reach", "stop"] = "reach"
    # what a proxy episode is: "dash" = reach one goal through a debris corridor (docs/proxy.md),
    # "mission" = a whole rescue-dog mission driven by the scripted planner, as `env run` drives it
    episodes: Literal["dash", "mission"] = "dash"
    real: RealTaskSection = Field(default_factory=RealTaskSection)

    @field_validator("id")
    @classmethod
    def _known_proxy(cls, v: str) -> str:
        if v.startswith("proxy:") and v != "proxy:rescue-dog":
            raise ValueError(f"unknown proxy task {v!r}; available: 'proxy:rescue-dog'")
        if ":" not in v:
            raise ValueError("expected 'proxy:<name>', 'builtin:<name>' or 'module:attr'")
        return v

    @model_validator(mode="after")
    def _mission_episodes(self) -> TaskSection:
        if self.episodes == "mission" and self.arrival != "reach":
            raise ValueError("episodes = 'mission' has its own success rule (the victim reached without a "
                             "collision); leave arrival at 'reach'")
        return self


class BaseSection(_Section):
    source: str = "builtin:rescue-dog"  # builtin:<name> | "package.module:attr" | path/to/base.onnx

    @field_validator("source")
    @classmethod
    def _form(cls, v: str) -> str:
        if v.startswith("builtin:") or v.endswith(".onnx") or re.fullmatch(r"[\w.]+:[\w.]+", v):
            return v
        raise ValueError("expected 'builtin:<name>', 'package.module:attr' or a path ending in .onnx")


class ResidualSection(_Section):
    hidden_dim: int = Field(256, ge=4, le=8192)
    alpha: float = Field(0.15, gt=0.0, le=1.0)
    rate_limit: float = Field(0.5, gt=0.0, le=2.0)
    gate: bool = True
    steps: int = Field(1_000_000, ge=1_000)  # training budget (env steps), a ceiling: validation stops it earlier
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)  # held-out evaluation seeds start at 1,000,003
    # the reward PPO trains on: "dense" = the task's documented shaped reward (progress toward the goal
    # plus the +1/-1 outcome), "sparse" = the outcome alone. Scoring always counts outcomes.
    reward: Literal["sparse", "dense"] = "dense"
    # the learner: "ppo" (on-policy, the default every figure in docs/results.md was measured with),
    # "sac" (off-policy: replay, critic warm-up on the base's own transitions; cadenza.residual.sac), or
    # "auto" (the governor picks by the env's measured cost per step; docs/config.md#sac)
    algorithm: Literal["ppo", "sac", "auto"] = "ppo"


class GovernanceSection(_Section):
    success_threshold: Unit = 0.85  # the success interval must sit at or above this
    max_collision_rate: Unit = 0.10  # the collision interval must sit at or below this
    regression_margin: Unit = 0.05  # allowed drop vs the baseline / base alone (non-inferiority)
    min_episodes: int = Field(200, ge=1)
    eval_episodes: int = Field(500, ge=1)  # episodes per look of a scorecard (the first look and each batch)
    # sequential scoring in simulation: an undecided scorecard draws eval_episodes more fresh held-out
    # episodes per look, up to this many (alpha spent linearly over the looks; docs/governance.md)
    max_eval_episodes: int = Field(3000, ge=1, le=1_000_000)
    validation_episodes: int | None = Field(None, ge=1, le=100_000)  # training's validation card [governor's]
    # a card every this many rounds at the target level [governor's: the task's; a dear task of your own's
    # are spaced by their cost, docs/governance.md]; set, it pins the cadence whatever the env step costs
    validation_every: int | None = Field(None, ge=1, le=100_000)
    # training stops once its validation card clears every gate by this
    stop_margin: float = Field(0.01, ge=0.0, le=0.5)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    saturation_warn: Unit = 0.5  # mean |delta| above this share of its bound is a warning
    max_clamp_share: Unit = 0.5  # share of steps with the action at its bounds above this: BLOCK
    max_student_gap: Unit = 0.03  # teacher minus student success
    # a student's scorecard (distill eval) may look further: its episodes are cheap (an ONNX MLP, no
    # base, no torch) and a faithful student sits within a point or two of its teacher (docs/distill.md)
    max_student_eval_episodes: int = Field(10_000, ge=1, le=1_000_000)
    latency_budget_ms: float = Field(20.0, gt=0.0, le=1e6)  # 50 Hz control loop


class DistillSection(_Section):
    epochs: int = Field(60, ge=1)
    hidden_dim: int = Field(64, ge=4, le=4096)
    dagger_rounds: int = Field(4, ge=1)
    rollout_envs: int = Field(256, ge=1, le=65536)  # parallel episodes per DAgger round (one horizon each)
    quant_aware_epochs: int = Field(10, ge=0, le=10_000)  # with --quantize: int8-aware fine-tuning epochs


class BenchSection(_Section):
    steps: int = Field(200_000, ge=1_000)
    seeds: int = Field(3, ge=1)
    cost_per_gpu_hour: float = Field(2.0, ge=0.0, le=1e6)
    cost_per_cpu_core_hour: float = Field(0.05, ge=0.0, le=1e6)


class ActionSpec(_Section):
    """One mission action: its parameters and their [min, max] ranges."""

    description: str = ""
    params: dict[str, tuple[float, float]] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _ranges(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for name, (lo, hi) in v.items():
            if lo > hi:
                raise ValueError(f"parameter {name!r}: min {lo} is above max {hi}")
        return v


# What a goal asks for; a mission succeeds when its goal's objective is met without a collision
# (cadenza.mission.objectives). A listed goal without an entry in [mission.objectives] is reach_victim.
OBJECTIVE_NAMES = ("in_debris", "on_ledge", "reach_victim", "sit_by_victim")
Objective = Literal["in_debris", "on_ledge", "reach_victim", "sit_by_victim"]


def normalise_goal(text: str) -> str:
    """Lower case, single spaces, no punctuation: how goal texts are compared."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s'-]", " ", text.lower())).strip()


class MissionSection(_Section):
    goals: list[str] = Field(default_factory=list)
    actions: dict[str, ActionSpec] = Field(default_factory=dict)
    max_steps: int = Field(40, ge=1, le=100_000)
    objectives: dict[str, Objective] = Field(default_factory=dict)  # goal text -> objective

    @model_validator(mode="after")
    def _objectives_name_goals(self) -> MissionSection:
        known = {normalise_goal(g) for g in self.goals}
        for goal in self.objectives:
            if normalise_goal(goal) not in known:
                raise ValueError(f"objectives: {goal!r} is not one of mission.goals "
                                 f"({', '.join(repr(g) for g in self.goals) or 'none listed'})")
        return self

    def objective_of(self, goal: str) -> str | None:
        """The objective of a listed goal (compared normalised; ``reach_victim`` when not configured), or
        None for a goal that is not listed."""
        key = normalise_goal(goal)
        if key not in {normalise_goal(g) for g in self.goals}:
            return None
        return next((o for g, o in self.objectives.items() if normalise_goal(g) == key), "reach_victim")

    @field_validator("goals")
    @classmethod
    def _goal_text(cls, v: list[str]) -> list[str]:
        for i, goal in enumerate(v):
            if not goal.strip():
                raise ValueError(f"goal {i} is empty")
            if len(goal) > MAX_TEXT:
                raise ValueError(f"goal {i} is {len(goal)} characters long; at most {MAX_TEXT}")
        return v


class VlaFinetuneSection(_Section):
    prompt_template: str = Field("{system_prompt}\n\nGoal: {goal}\nObservation: {observation}\nNext action:",
                                 min_length=1)


class LlmSection(_Section):
    base_url: str = Field("https://api.groq.com/openai/v1", pattern=r"^https?://\S+$")
    model: str = Field("llama-3.3-70b-versatile", min_length=1)
    # the name of the environment variable holding the key; the key itself never goes in the file
    api_key_env: str = Field("GROQ_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_s: float = Field(30.0, gt=0.0, le=3600.0)  # per attempt
    max_retries: int = Field(2, ge=0, le=10)  # the openai SDK's retries (408/409/429/5xx, honouring retry-after)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=16, le=32768)


class ScaleSection(_Section):
    backend: Literal["local", "ray"] = "local"  # where parallel work runs (docs/scale.md)
    # unset: a local Ray instance per command; "auto"; HOST:PORT or ray://HOST:PORT
    ray_address: str | None = Field(None, max_length=500, pattern=r"^(auto|(ray://)?[A-Za-z0-9._-]+:\d{1,5})$")
    rollout_workers: int = Field(1, ge=1, le=1024)  # training: rollout shards (1: one piece, as before)


class TrackingSection(_Section):
    track: Literal["tensorboard", "mlflow", "none"] = "tensorboard"  # where commands log (docs/tracking.md)
    # the MLflow tracking server; unset: MLFLOW_TRACKING_URI
    uri: str | None = Field(None, max_length=500, pattern=r"^((https?|file|sqlite)://\S+|databricks)$")
    experiment: str | None = Field(None, min_length=1, max_length=200)  # MLflow experiment; unset: the project's name


class RegistrySection(_Section):
    # where the artefact registry lives (docs/tracking.md): the project folder, or an MLflow model registry
    backend: Literal["local", "mlflow"] = "local"
    # the MLflow server of the registry; unset: [tracking] uri, then MLFLOW_TRACKING_URI
    uri: str | None = Field(None, max_length=500, pattern=r"^((https?|file|sqlite)://\S+|databricks)$")


class ProjectConfig(_Section):
    project: ProjectSection
    task: TaskSection = Field(default_factory=TaskSection)
    base: BaseSection = Field(default_factory=BaseSection)
    residual: ResidualSection = Field(default_factory=ResidualSection)
    governance: GovernanceSection = Field(default_factory=GovernanceSection)
    distill: DistillSection = Field(default_factory=DistillSection)
    bench: BenchSection = Field(default_factory=BenchSection)
    mission: MissionSection = Field(default_factory=MissionSection)
    vla_finetune: VlaFinetuneSection = Field(default_factory=VlaFinetuneSection)
    llm: LlmSection = Field(default_factory=LlmSection)
    scale: ScaleSection = Field(default_factory=ScaleSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    registry: RegistrySection = Field(default_factory=RegistrySection)

    @model_validator(mode="after")
    def _mission_goals_unique(self) -> ProjectConfig:
        if len(set(self.mission.goals)) != len(self.mission.goals):
            raise ValueError("mission.goals has duplicates")
        return self


class Project:
    """A loaded project directory: its root, its validated config and the paths it uses."""

    def __init__(self, root: Path, config: ProjectConfig, raw: bytes) -> None:
        self.root = root
        self.config = config
        self.config_hash = hashlib.sha256(raw).hexdigest()[:16]

    @property
    def name(self) -> str:
        return self.config.project.name

    @property
    def residual_dir(self) -> Path:
        return self.root / "residual"

    @property
    def student_dir(self) -> Path:
        return self.root / "student"

    @property
    def bench_dir(self) -> Path:
        return self.root / "bench"

    @property
    def registry_dir(self) -> Path:
        return self.root / ".cadenza" / "registry"

    @property
    def runs_dir(self) -> Path:
        return self.root / ".cadenza-env"

    @property
    def prompt_path(self) -> Path:
        return self.root / PROMPT_NAME


def _format_error(path: Path, err: dict) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith("function-"))
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return f"{path}: unknown key '{loc}'"
    if kind == "missing":
        return f"{path}: missing required key '{loc}'"
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {_short(repr(got))})"
    return f"{path}: key '{loc}': {msg}{shown}" if loc else f"{path}: {msg}"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def parse_config(path: Path, raw: bytes) -> ProjectConfig:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: TOML syntax error: {e}") from None
    if "project" not in data:
        raise ConfigError(f"{path}: missing required table [project] (with at least name = \"...\")")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(path, e.errors()[0])) from None


def load_project(root: str | Path) -> Project:
    """Load and validate ``<root>/cadenza.toml``; raises :class:`ConfigError` with one line."""
    root = Path(root)
    path = root / CONFIG_NAME
    try:
        if not root.exists():
            raise ConfigError(f"{root}: no such project directory (create one with: cadenza init {root})")
        if not root.is_dir():
            raise ConfigError(f"{root}: not a directory; expected a project directory holding {CONFIG_NAME}")
        if not path.is_file():
            raise ConfigError(f"{path}: missing; is {root} a cadenza project? (create one with: cadenza init {root})")
        raw = path.read_bytes()
    except (OSError, ValueError) as e:  # a name too long, a NUL byte, no permission: still one line
        why = getattr(e, "strerror", None) or e
        raise ConfigError(f"{_short(str(root))}: cannot read the project ({why})") from None
    return Project(root, parse_config(path, raw), raw)
