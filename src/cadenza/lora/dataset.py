"""The LoRA head's dataset: goal -> steps examples, stored in ``<project>/lora/dataset.jsonl``.

One JSON object per line (the file is rewritten atomically on every change):

* ``goal``: the goal text as given; ``steps``: ``[{"name": ..., "params": {...}}, ...]``;
* ``objective``: what the goal asks for (:data:`cadenza.mission.objectives.OBJECTIVES`): the project's
  configured objective when the goal is one of ``mission.goals`` (compared normalised), otherwise
  read from the steps (:func:`objective_from_steps`);
* ``image``: ``{"path", "sha256"}`` of the visual context given with ``--image``, or null (stored by
  reference; the head does not read images);
* ``source``: ``add`` (``env lora add``) or ``finetune`` (merged from an ``env finetune`` export or
  run logs, with the ``observation`` the step was taken from and the ``prev`` step before it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadenza.errors import CadenzaError, UsageError
from cadenza.lora.augment import normalise
from cadenza.mission.actions import ActionError, ActionStep, Vocabulary
from cadenza.mission.objectives import DEFAULT_OBJECTIVE, OBJECTIVES
from cadenza.project.config import Project
from cadenza.utils.io import JsonlError, atomic_write_text, jsonl_records, sha256_file

DATASET = "lora/dataset.jsonl"


@dataclass
class Example:
    goal: str
    steps: list[ActionStep]
    objective: str
    source: str = "add"
    image: dict[str, str] | None = None
    observation: dict[str, Any] | None = None
    prev: ActionStep | None = None
    origin: str | None = None  # for merged records: run_id:episode:step
    extra: dict[str, Any] = field(default_factory=dict)

    def steps_text(self) -> str:
        return ", ".join(s.text() for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"goal": self.goal, "steps": [s.as_dict() for s in self.steps], "objective": self.objective,
                "source": self.source, "image": self.image, "observation": self.observation,
                "prev": self.prev.as_dict() if self.prev else None, "origin": self.origin}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        prev = d.get("prev")
        return cls(str(d["goal"]), [ActionStep(s["name"], {k: float(v) for k, v in s.get("params", {}).items()})
                                    for s in d["steps"]], str(d["objective"]), str(d.get("source", "add")),
                   d.get("image"), d.get("observation"),
                   ActionStep(prev["name"], dict(prev.get("params", {}))) if prev else None, d.get("origin"))


def dataset_path(project: Project) -> Path:
    return project.root / DATASET


def goal_objectives(project: Project) -> dict[str, str]:
    """Normalised listed goal -> its configured objective (``[mission.objectives]``)."""
    configured = getattr(project.config.mission, "objectives", None) or {}
    return {normalise(g): str(o) for g, o in configured.items()}


def objective_from_steps(steps: list[ActionStep]) -> str:
    """The objective a plan pursues when its goal is not a listed one: it ends with ``sit`` ->
    ``sit_by_victim``; its last move is ``climb_step`` -> ``on_ledge``; it ends crawling (its last
    move is ``crawl_forward``) -> ``in_debris``; otherwise ``reach_victim``."""
    moves = [s.name for s in steps if s.name not in ("turn_left", "turn_right", "stand")]
    if steps and steps[-1].name == "sit":
        return "sit_by_victim"
    if moves and moves[-1] == "climb_step":
        return "on_ledge"
    if moves and moves[-1] == "crawl_forward":
        return "in_debris"
    return DEFAULT_OBJECTIVE


def objective_for(project: Project, goal: str, steps: list[ActionStep]) -> str:
    return goal_objectives(project).get(normalise(goal)) or objective_from_steps(steps)


def parse_steps(text: str, vocab: Vocabulary, max_steps: int) -> list[ActionStep]:
    """``'walk_forward 1.0, crawl_forward 0.5'`` -> checked steps; one clear error naming a bad step."""
    parts = [p.strip() for p in text.replace(";", ",").split(",")]
    if not any(parts):
        raise UsageError(f"--steps: no steps given; allowed: {vocab.text()}")
    out = []
    for i, part in enumerate(parts, 1):
        if not part:
            raise UsageError(f"--steps: step {i} is empty (two commas in a row?)")
        try:
            steps = vocab.parse_sequence(part)
            if len(steps) != 1:
                raise ActionError(f"{part!r} holds {len(steps)} actions; separate steps with commas")
            checked = vocab.check(steps[0])
        except ActionError as e:
            allowed = "" if "available:" in str(e) else f"; allowed: {vocab.text()}"
            raise UsageError(f"--steps: step {i} {part!r}: {e}{allowed}") from None
        if checked.clamped:
            p, v = next(iter(checked.clamped.items()))
            lo, hi = vocab.actions[checked.step.name][p]
            raise UsageError(f"--steps: step {i} {part!r}: {p} = {v:g} is outside its range [{lo:g}, {hi:g}]")
        out.append(ActionStep(checked.step.name, dict(checked.step.params)))
    if len(out) > max_steps:
        raise UsageError(f"--steps: {len(out)} steps; a plan has at most mission.max_steps = {max_steps}")
    return out


def load_dataset(project: Project) -> list[Example]:
    p = dataset_path(project)
    if not p.is_file():
        return []
    out = []
    try:
        for i, d in jsonl_records(p):
            try:
                ex = Example.from_dict(d)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise CadenzaError(f"{p}:{i}: not a dataset record ({type(e).__name__}: {e})") from None
            if ex.objective not in OBJECTIVES:
                raise CadenzaError(f"{p}:{i}: unknown objective {ex.objective!r}; expected one of "
                                   f"{', '.join(OBJECTIVES)}")
            out.append(ex)
    except JsonlError as e:
        raise CadenzaError(f"{p}:{e.line}: not a dataset record (JSONDecodeError: {e.error})") from None
    return out


def save_dataset(project: Project, examples: Iterable[Example]) -> None:
    text = "".join(json.dumps(e.as_dict(), ensure_ascii=False, separators=(",", ":")) + "\n" for e in examples)
    atomic_write_text(dataset_path(project), text)


def add_example(project: Project, vocab: Vocabulary, goal: str, steps_text: str,
                image: Path | None = None) -> Example:
    """Validate and append one example; returns it."""
    steps = parse_steps(steps_text, vocab, project.config.mission.max_steps)
    img = None
    if image is not None:
        try:
            img = {"path": str(Path(image).resolve()), "sha256": sha256_file(image)}
        except OSError as e:
            raise UsageError(f"--image: cannot read {image} ({e.strerror or e})") from None
    ex = Example(" ".join(goal.split()), steps, objective_for(project, goal, steps), "add", img)
    data = load_dataset(project)
    for old in data:
        if normalise(old.goal) == normalise(ex.goal) and old.steps_text() == ex.steps_text() and old.source == "add":
            raise CadenzaError(f"the dataset already holds {ex.goal!r} -> {ex.steps_text()}")
    save_dataset(project, [*data, ex])
    return ex


def _records_from(path: Path) -> list[dict[str, Any]]:
    """Records of an ``env finetune`` jsonl export, or of a run log (converted with the same builder)."""
    from cadenza.mission.finetune import build_records
    from cadenza.mission.runlog import read_log

    first = ""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError) as e:
        raise CadenzaError(f"--finetune: cannot read {path} ({e})") from None
    try:
        head = json.loads(first) if first.strip() else {}
    except json.JSONDecodeError:
        raise CadenzaError(f"--finetune: {path}:1: not JSON; expected an env finetune export or a run log") from None
    if isinstance(head, dict) and head.get("type") == "header":
        return build_records_for(path, read_log, build_records)
    out = []
    try:
        for i, rec in jsonl_records(path):
            missing = [k for k in ("goal", "observation", "action_name", "params", "run_id", "episode", "step")
                       if not isinstance(rec, dict) or k not in rec]
            if missing:
                raise CadenzaError(f"--finetune: {path}:{i}: record lacks {', '.join(missing)}; expected an "
                                   "env finetune --format jsonl export")
            out.append(rec)
    except JsonlError as e:
        raise CadenzaError(f"--finetune: {path}:{e.line}: malformed JSON") from None
    return out


def build_records_for(path: Path, read_log: Any, build_records: Any) -> list[dict[str, Any]]:
    from cadenza.project.config import load_project

    log = read_log(path)
    root = Path(log.header.get("project_root", path.parent.parent))
    try:
        project = load_project(root)
    except Exception:
        raise CadenzaError(f"--finetune: {path}: its project {root} cannot be loaded to read the log") from None
    return build_records(project, [log])


def merge_finetune(project: Project, vocab: Vocabulary, path: Path, *, horizon: int = 6) -> tuple[int, int]:
    """Merge the steps of successful missions (valid, no collision) as observation-conditioned examples.

    Each record becomes the step taken plus the next ones of the same mission (at most ``horizon``).
    Returns (records added, records skipped: failed missions, invalid steps, duplicates)."""
    records = _records_from(path)
    by_ep: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        by_ep.setdefault((str(r["run_id"]), int(r["episode"])), []).append(r)
    data = load_dataset(project)
    seen = {e.origin for e in data if e.origin}
    added, skipped = [], 0
    for (run_id, ep), recs in by_ep.items():
        recs.sort(key=lambda r: int(r["step"]))
        ok = all(r.get("episode_success") for r in recs) and all(r.get("valid", True) for r in recs)
        steps = []
        for r in recs:
            try:
                steps.append(vocab.check(ActionStep(r["action_name"], dict(r["params"]))).step)
            except ActionError:
                ok = False
        if not ok:
            skipped += len(recs)
            continue
        for k, r in enumerate(recs):
            origin = f"{run_id}:{ep}:{r['step']}"
            if origin in seen:
                skipped += 1
                continue
            target = [ActionStep(s.name, dict(s.params)) for s in steps[k:k + horizon]]
            added.append(Example(str(r["goal"]), target, objective_for(project, r["goal"], steps), "finetune",
                                 None, r["observation"], steps[k - 1] if k else None, origin))
    if added:
        save_dataset(project, [*data, *added])
    return len(added), skipped
