"""The project's cached runs: every ``.cadenza-env/*.log.jsonl``, read leniently (bad lines skipped and counted).

Each mission becomes a :class:`MissionView`: its seed, perturbation, outcome and steps, each step with
the pose it started from (so a miner can measure what a step did). Logs are read newest first; the
SHA-256 of every log read is kept, so a prompt version can name the evidence it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadenza.errors import CadenzaError
from cadenza.mission.runlog import LOG_SUFFIX, RunLogError, read_log
from cadenza.project.config import Project
from cadenza.utils.io import sha256_file


class NoRunsError(CadenzaError):
    """No run log to learn from (exit code 1)."""


@dataclass
class StepView:
    index: int  # 1-based
    action: str  # name
    params: dict[str, float]
    text: str  # e.g. "walk_forward 1.2"
    observation: dict[str, Any]
    observation_text: str
    pose0: tuple[float, float, float]  # x, y, heading (deg) before the step
    pose1: tuple[float, float, float]  # after
    collision: str | None  # the kind, when the step ended in one
    note: str | None
    valid: bool
    error: str | None
    raw: str | None
    planner: dict[str, Any] | None  # the llm planner's per-decision counts, when logged


@dataclass
class MissionView:
    run_id: str
    log: Path
    episode: int
    seed: int
    perturb: float
    policy: str
    goal: str
    success: bool
    reason: str
    collision: str | None
    steps: list[StepView]


@dataclass
class RunSet:
    missions: list[MissionView] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)  # log path -> sha256
    bad_lines: int = 0
    unreadable: list[str] = field(default_factory=list)  # "path: why" for logs that could not be read at all
    system_prompts: set[str] = field(default_factory=set)  # the prompts the runs used

    @property
    def failures(self) -> list[MissionView]:
        return [m for m in self.missions if not m.success]

    @property
    def seeds(self) -> set[int]:
        return {m.seed for m in self.missions}

    def log_texts(self) -> list[str]:
        """Texts the runs produced (observations, raw replies, errors, notes): candidates must not copy them."""
        out: set[str] = set()
        for m in self.missions:
            for s in m.steps:
                out.update(t for t in (s.observation_text, s.raw, s.error, s.note) if t)
        return sorted(out)


def _pose(v: Any, default: tuple[float, float, float]) -> tuple[float, float, float]:
    try:
        return float(v[0]), float(v[1]), float(v[2])
    except (TypeError, ValueError, IndexError):
        return default


def log_paths(project: Project, limit: int | None = None) -> list[Path]:
    """The project's run logs, newest first (run ids start with the UTC time), at most ``limit``."""
    d = project.runs_dir
    paths = sorted(d.glob(f"*{LOG_SUFFIX}"), key=lambda p: p.name, reverse=True) if d.is_dir() else []
    return paths[:limit] if limit else paths


def load_runs(project: Project, limit: int | None = None) -> RunSet:
    """Read up to ``limit`` run logs (newest first); raises :class:`NoRunsError` when there are none."""
    paths = log_paths(project, limit)
    if not paths:
        raise NoRunsError(f"{project.runs_dir}: no run logs (*{LOG_SUFFIX}) to learn from; make some with "
                          f"`cadenza env run {project.root}`")
    rs = RunSet()
    for path in paths:
        try:
            log = read_log(path, skip_bad_lines=True)
        except RunLogError as e:
            rs.unreadable.append(str(e))
            continue
        rs.logs[str(path)] = sha256_file(path)
        rs.bad_lines += len(log.bad_lines)
        h = log.header
        rs.system_prompts.add(str(h.get("system_prompt", "")))
        for ep, parts in log.episodes().items():
            start, end = parts["start"], parts["end"]
            if end is None:  # an unfinished mission (crash): nothing to learn about its outcome
                continue
            site = (start or {}).get("site", {})
            pose = _pose([0.0, 0.0, (site.get("start") or [0, 0, 0])[2]], (0.0, 0.0, 0.0))
            steps = []
            for r in parts["steps"]:
                p1 = _pose(r.get("pose"), pose)
                act = r.get("action") or {}
                out = r.get("outcome") or {}
                steps.append(StepView(int(r.get("step", len(steps) + 1)), str(act.get("name", "?")),
                                      dict(act.get("params") or {}), str(r.get("action_text", act.get("name", ""))),
                                      r.get("observation") or {}, str(r.get("observation_text", "")), pose, p1,
                                      out.get("collision_kind") if r.get("collision") else None, out.get("note"),
                                      bool(r.get("valid", True)), r.get("error"), r.get("raw"), r.get("planner")))
                pose = p1
            rs.missions.append(MissionView(
                str(h.get("run_id", path.name)), path, int(ep), int(end.get("seed", (start or {}).get("seed", -1))),
                float(h.get("perturb", 0.0)), str(h.get("policy", "?")), str(end.get("goal", "")),
                bool(end.get("success")), str(end.get("reason", "")), end.get("collision_kind"), steps))
    if not rs.missions:
        why = "; ".join(rs.unreadable[:3]) or "no finished missions in them"
        raise NoRunsError(f"{project.runs_dir}: no readable missions in {len(paths)} run log(s) ({why})")
    return rs
