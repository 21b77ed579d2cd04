"""``cadenza env run``: drive missions with a planner and the low-level controller, log every step.

One run = one invocation = one log file holding ``episodes`` missions. Mission ``i`` uses seed
``seed + i`` for both the site layout and the robot's perturbation draw, so any mission of a run can be
replayed alone with ``--seed seed+i --episodes 1`` and gives the same steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadenza import __version__
from cadenza.governance.stats import wilson
from cadenza.mission.actions import Vocabulary
from cadenza.mission.body import ProxyBody
from cadenza.mission.controller import LowLevelController, load_controller
from cadenza.mission.episode import DEFAULT_GOAL, Mission
from cadenza.mission.objectives import DEFAULT_OBJECTIVE, OBJECTIVES
from cadenza.mission.planners import Planner, make_planner
from cadenza.mission.prompt import history_text, prompt_fields, render, template_fields
from cadenza.mission.runlog import LOG_SUFFIX, SCHEMA, RunLogWriter, new_run_id, utc_now
from cadenza.mission.skills import SKILL_PARAMS, StepOutcome
from cadenza.mission.world import COLLISION_TEXT, Site, summary_text
from cadenza.project.config import CONFIG_NAME, ActionSpec, ConfigError, Project

STEP_COST = 0.05  # reward charged per action step

# Used when a project's cadenza.toml has no [mission.actions] table.
DEFAULT_ACTIONS: dict[str, ActionSpec] = {
    "walk_forward": ActionSpec(description="walk straight ahead", params={"distance_m": (0.1, 3.0)}),
    "crawl_forward": ActionSpec(description="crawl low under debris", params={"distance_m": (0.1, 2.0)}),
    "turn_left": ActionSpec(params={"degrees": (5.0, 180.0)}),
    "turn_right": ActionSpec(params={"degrees": (5.0, 180.0)}),
    "climb_step": ActionSpec(description="climb one step or ledge directly ahead"),
    "sit": ActionSpec(description="sit and signal"),
    "stand": ActionSpec(description="stand up from sit or crawl"),
}


@dataclass(frozen=True)
class RunOptions:
    policy: str = "scripted"
    goal: str | None = None
    episodes: int = 1
    seed: int = 0
    perturb: float = 0.0
    controller: str = "residual"
    objective: str | None = None  # the objective of a goal that is not in mission.goals [reach_victim]


@dataclass
class EpisodeResult:
    episode: int
    seed: int
    goal: str
    success: bool
    steps: int
    ret: float
    reason: str
    collision: str | None = None


@dataclass
class RunResult:
    run_id: str
    log_path: Path
    header: dict[str, Any]
    episodes: list[EpisodeResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def successes(self) -> int:
        return sum(e.success for e in self.episodes)


def success_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (:func:`cadenza.governance.stats.wilson`)."""
    return wilson(k, n, confidence)


def mission_vocabulary(project: Project) -> tuple[Vocabulary, list[str]]:
    """The project's action vocabulary, checked against the skills the mission world can execute."""
    specs = project.config.mission.actions
    notes = []
    if not specs:
        specs = DEFAULT_ACTIONS
        notes.append("cadenza.toml has no [mission.actions]; using the built-in rescue-dog vocabulary")
    cfg = project.root / CONFIG_NAME
    for name, spec in specs.items():
        if name not in SKILL_PARAMS:
            raise ConfigError(f"{cfg}: key 'mission.actions.{name}': the rescue-dog world has no skill {name!r}; "
                              f"available: {', '.join(SKILL_PARAMS)}")
        if set(spec.params) != set(SKILL_PARAMS[name]):
            want = ", ".join(SKILL_PARAMS[name]) or "no parameters"
            got = ", ".join(spec.params) or "none"
            raise ConfigError(f"{cfg}: key 'mission.actions.{name}.params': the skill takes {want}, got {got}")
    return Vocabulary.from_config(specs), notes


def read_system_prompt(project: Project) -> str:
    p = project.prompt_path
    return p.read_text(encoding="utf-8") if p.is_file() else ""


def _reward(out: StepOutcome) -> float:
    return out.progress_m - STEP_COST + (1.0 if out.reached else 0.0) - (1.0 if out.collision else 0.0)


class MissionRunner:
    """Runs missions for one project; see :func:`run_missions`."""

    def __init__(self, project: Project, opts: RunOptions, *, planner: Planner | None = None,
                 controller: LowLevelController | None = None, system_prompt: str | None = None) -> None:
        if not 0.0 <= opts.perturb <= 1.0:
            raise ConfigError(f"--perturb must be in [0, 1], got {opts.perturb}")
        if opts.episodes < 1:
            raise ConfigError(f"--episodes must be at least 1, got {opts.episodes}")
        if opts.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {opts.seed}")
        self.project, self.opts = project, opts
        self.template = project.config.vla_finetune.prompt_template
        template_fields(self.template, f"{project.root / CONFIG_NAME}: key 'vla_finetune.prompt_template'")
        self.vocab, self.notes = mission_vocabulary(project)
        self.planner = planner or make_planner(opts.policy, project, self.vocab)
        self.controller = controller or load_controller(project, opts.controller)
        self.notes += self.controller.notes
        self.system_prompt = read_system_prompt(project) if system_prompt is None else system_prompt
        self.max_steps = project.config.mission.max_steps
        self.goals = [opts.goal] if opts.goal else (list(project.config.mission.goals) or [DEFAULT_GOAL])
        if opts.objective is not None and opts.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {opts.objective!r}")
        # each goal's objective: the configured one for a listed goal, else opts.objective (reach_victim)
        self.objectives = {g: project.config.mission.objective_of(g) or opts.objective or DEFAULT_OBJECTIVE
                           for g in self.goals}
        check_goal = getattr(self.planner, "check_goal", None)  # a planner that knows only some goals
        for g in self.goals if check_goal is not None else ():
            check_goal(g)

    def header(self, run_id: str) -> dict[str, Any]:
        p, o = self.project, self.opts
        return {
            "type": "header", "schema": SCHEMA, "run_id": run_id, "time": utc_now(),
            "project": p.name, "project_root": str(p.root.resolve()), "config_hash": p.config_hash,
            "cadenza_version": __version__, "policy": getattr(self.planner, "name", o.policy),
            "planner_version": getattr(self.planner, "version", None), "objectives": self.objectives,
            "controller": self.controller.describe(), "seed": o.seed, "episodes": o.episodes,
            "perturb": o.perturb, "task": "proxy", "world": "rescue-dog", "max_steps": self.max_steps,
            "goals": self.goals, "system_prompt": self.system_prompt, "prompt_template": self.template,
            "actions": self.vocab.as_dict(), "actions_text": self.vocab.text(), "step_cost": STEP_COST,
        }

    def run(self, run_id: str | None = None, on_episode: Callable[[EpisodeResult], None] | None = None,
            log_dir: Path | None = None) -> RunResult:
        """Run the missions; the log goes to ``log_dir`` (default: the project's ``.cadenza-env``)."""
        run_id = run_id or new_run_id()
        path = (log_dir or self.project.runs_dir) / f"{run_id}{LOG_SUFFIX}"
        header = self.header(run_id)
        result = RunResult(run_id, path, header, notes=list(self.notes))
        with RunLogWriter(path) as log:
            log.write(header, sync=True)
            try:
                for i in range(self.opts.episodes):
                    ep = self._episode(log, i)
                    result.episodes.append(ep)
                    if on_episode is not None:
                        on_episode(ep)
            except BaseException as e:
                try:
                    log.write({"type": "aborted", "time": utc_now(), "error": f"{type(e).__name__}: {e}",
                               "episodes_done": len(result.episodes)}, sync=True)
                finally:
                    raise
            k, n = result.successes, len(result.episodes)
            lo, hi = success_interval(k, n)
            totals = getattr(self.planner, "totals", None)  # the llm planner's requests, repairs, fallbacks
            log.write({"type": "run_end", "time": utc_now(), "episodes": n, "successes": k,
                       "success_rate": k / n, "ci95": [round(lo, 4), round(hi, 4)],
                       **({"planner": totals()} if totals else {})}, sync=True)
        return result

    def _episode(self, log: RunLogWriter, i: int) -> EpisodeResult:
        seed = self.opts.seed + i
        goal = self.goals[i % len(self.goals)]
        site = Site.generate(seed)
        body = ProxyBody(self.opts.perturb, seed, site.rocks, site.start_yaw)
        self.controller.reset()
        objective = self.objectives[goal]
        m = Mission(site, body, self.planner, self.vocab, goal, max_steps=self.max_steps, seed=seed,
                    objective=objective)
        log.write({"type": "episode_start", "episode": i, "seed": seed, "goal": goal, "objective": objective,
                   "site": site.as_dict()})
        ret, reason, seconds = 0.0, "step limit", 0.0
        while not m.over:
            obs = m.observation()
            text = summary_text(obs)
            hist = history_text([s.text() for s in m.taken])
            prompt = render(self.template, prompt_fields(
                system_prompt=self.system_prompt, goal=goal, observation=obs, observation_text=text,
                actions_text=self.vocab.text(), history=hist, step=m.steps + 1, project=self.project.name))
            m.decide(obs, prompt=prompt, observation_text=text)
            planner_info = getattr(self.planner, "step_record", None)  # what the decision cost (llm planner)
            planner_info = planner_info() if planner_info else None
            m.run_step(self.controller)
            d = m.finish_step()
            out, action, state = d.outcome, d.action, m.state
            assert out is not None
            reward = _reward(out)
            ret += reward
            seconds += out.ticks * body.dt
            if m.success:
                reason = "victim reached" if objective == "reach_victim" else f"objective met: {OBJECTIVES[objective]}"
            elif out.collision:
                reason = f"collision: {COLLISION_TEXT[out.collision]}"
            elif out.ends_mission:
                reason = out.note or "mission ended"
            log.write({
                "type": "step", "episode": i, "step": d.index, "goal": goal, "prompt": prompt, "history": hist,
                "observation": obs, "observation_text": text,
                "action": {"name": action.name, "params": dict(action.params)}, "action_text": action.text(),
                "raw": d.proposed.raw, "valid": d.error is None, "error": d.error, "clamped": d.clamped,
                "reward": round(reward, 4), "collision": out.collision is not None, "done": m.over,
                "success": out.reached, "outcome": out.as_dict(),
                "pose": [round(state.x, 3), round(state.y, 3), round(math.degrees(state.yaw), 1)],
                "posture": state.posture, "on_ledge": state.on_ledge, "trace": out.trace,
                **({"planner": planner_info} if planner_info is not None else {}),
            })
        ep = EpisodeResult(i, seed, goal, m.success, m.steps, ret, reason, m.collision)
        log.write({"type": "episode_end", "episode": i, "seed": seed, "goal": goal, "success": m.success,
                   "steps": m.steps, "return": round(ret, 4), "reason": reason, "collision_kind": m.collision,
                   "mission_seconds": round(seconds, 2)}, sync=True)
        return ep


def run_missions(project: Project, opts: RunOptions, *, planner: Planner | None = None,
                 controller: LowLevelController | None = None, run_id: str | None = None,
                 on_episode: Callable[[EpisodeResult], None] | None = None, system_prompt: str | None = None,
                 log_dir: Path | None = None) -> RunResult:
    """Run ``opts.episodes`` missions and log them; returns the per-mission results and the log path.

    ``planner`` and ``controller`` replace the ones ``opts`` names (for tests and custom loops);
    ``system_prompt`` replaces SYSTEM_PROMPT.md's text and ``log_dir`` the project's ``.cadenza-env``
    (``env train`` evaluates candidate prompts this way, away from the runs it learns from).
    """
    runner = MissionRunner(project, opts, planner=planner, controller=controller, system_prompt=system_prompt)
    return runner.run(run_id=run_id, on_episode=on_episode, log_dir=log_dir)
