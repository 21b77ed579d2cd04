"""``cadenza env finetune``: run logs -> (prompt, action, reward) records for VLA fine-tuning.

Prompts are re-rendered from what each step record holds, with the project's *current*
``vla_finetune.prompt_template`` (so changing the template and exporting again needs no new runs);
the system prompt is the one the run used (from the log header).

Two output formats:

* ``jsonl``: one JSON object per action step (see ``docs/runlog.md`` for the fields).
* ``lerobot``: a ``LeRobotDataset`` directory in the codebase **v3.0** layout, what LeRobot 0.4 and
  later load with ``LeRobotDataset(repo_id, root=...)``: ``data/chunk-000/file-000.parquet`` (the
  frames of many missions per file), ``meta/info.json`` (features, fps, totals, path templates),
  ``meta/episodes/chunk-000/file-000.parquet`` (per mission: tasks, length, which data file, the
  global frame range ``dataset_from_index`` / ``dataset_to_index``, and its source run and episode as
  ``cadenza/*`` columns), ``meta/tasks.parquet`` (the goals, indexed by text), ``meta/stats.json``
  (min, max, mean, std, count, q01-q99 of state and action) and ``meta/cadenza.json`` (the vocabulary,
  prompt template and source logs). One frame per action step; the task is the goal text.

Every output is written atomically: a crash leaves the previous output (or none), never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadenza.errors import CadenzaError
from cadenza.mission.actions import Vocabulary
from cadenza.mission.prompt import prompt_fields, render, template_fields
from cadenza.mission.runlog import RunLog, read_log
from cadenza.mission.world import STATE_NAMES, state_vector
from cadenza.project.config import CONFIG_NAME, Project
from cadenza.utils.io import atomic_write_text, new_temp_dir

FORMATS = ("jsonl", "lerobot")
LEROBOT_VERSION = "v3.0"
LEROBOT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
LEROBOT_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
FRAMES_PER_FILE = 200_000  # frames per data file (whole episodes; LeRobot's own limit is 100 MB per file)
LEROBOT_FPS = 1  # one frame per decision; the step's real duration is in step.seconds
CHUNK_SIZE = 1000


@dataclass
class ExportResult:
    output: Path
    records: int
    episodes: int
    logs: int
    bad_lines: dict[str, list[int]] = field(default_factory=dict)  # log path -> skipped line numbers

    @property
    def skipped(self) -> int:
        return sum(len(v) for v in self.bad_lines.values())


def _where(project: Project) -> str:
    return f"{project.root / CONFIG_NAME}: key 'vla_finetune.prompt_template'"


def build_records(project: Project, logs: list[RunLog]) -> list[dict[str, Any]]:
    """One record per step of every log, prompt rendered with the project's template."""
    template = project.config.vla_finetune.prompt_template
    where = _where(project)
    template_fields(template, where)
    out: list[dict[str, Any]] = []
    for log in logs:
        h = log.header
        actions_text = h.get("actions_text") or Vocabulary.from_dict(h["actions"]).text()
        for ep_index, ep in log.episodes().items():
            steps = ep["steps"]
            end = ep["end"]
            rewards = [float(s["reward"]) for s in steps]
            to_go = [sum(rewards[i:]) for i in range(len(rewards))]
            for s, rtg in zip(steps, to_go, strict=True):
                fields = prompt_fields(system_prompt=h["system_prompt"], goal=s["goal"], observation=s["observation"],
                                       observation_text=s["observation_text"], actions_text=actions_text,
                                       history=s["history"], step=int(s["step"]), project=h["project"])
                out.append({
                    "prompt": render(template, fields, where),
                    "action": s.get("action_text") or s["action"]["name"],
                    "reward": s["reward"],
                    "action_name": s["action"]["name"],
                    "params": s["action"].get("params", {}),
                    "valid": s.get("valid", True),
                    "done": s["done"],
                    "collision": s["collision"],
                    "return_to_go": round(rtg, 4),
                    "episode_success": end["success"] if end is not None else None,
                    "goal": s["goal"],
                    "observation": s["observation"],
                    "run_id": h["run_id"],
                    "episode": ep_index,
                    "step": s["step"],
                    "policy": h["policy"],
                    "controller": h["controller"].get("kind"),
                    "perturb": h.get("perturb"),
                    "task": h["task"],
                })
    return out


def _read_logs(paths: list[Path], skip_bad_lines: bool) -> list[RunLog]:
    if not paths:
        raise CadenzaError("give at least one run log (.log.jsonl written by `cadenza env run`)")
    logs = [read_log(p, skip_bad_lines=skip_bad_lines) for p in paths]
    seen: dict[str, Path] = {}
    for g in logs:
        rid = g.header["run_id"]
        if rid in seen:
            raise CadenzaError(f"{g.path}: run {rid} is already given as {seen[rid]}; give each run once")
        seen[rid] = g.path
    return logs


def export_jsonl(project: Project, log_paths: list[Path], output: Path, skip_bad_lines: bool = False) -> ExportResult:
    logs = _read_logs(log_paths, skip_bad_lines)
    records = build_records(project, logs)
    text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
    atomic_write_text(output, text)
    eps = {(r["run_id"], r["episode"]) for r in records}
    return ExportResult(output, len(records), len(eps), len(logs),
                        {str(g.path): g.bad_lines for g in logs if g.bad_lines})


# ---------------------------------------------------------------------------------------------- lerobot
def _action_layout(vocab: Vocabulary) -> list[str]:
    names = [f"is.{a}" for a in vocab.names]
    names += [f"{a}.{p}" for a, ps in vocab.actions.items() for p in ps]
    return names


def _action_vector(vocab: Vocabulary, name: str, params: dict[str, Any]) -> list[float]:
    vec = [1.0 if a == name else 0.0 for a in vocab.names]
    for a, ps in vocab.actions.items():
        for p in ps:
            v = params.get(p) if a == name else None
            vec.append(float(v) if isinstance(v, (int, float)) else 0.0)
    return vec


def _quantile_stats(values: list[list[float]]) -> dict[str, Any]:
    """LeRobot's per-feature statistics: min, max, mean, std, count and the q01-q99 quantiles."""
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {}
    out: dict[str, Any] = {"min": a.min(0).tolist(), "max": a.max(0).tolist(), "mean": a.mean(0).tolist(),
                           "std": a.std(0).tolist(), "count": [int(a.shape[0])]}
    for q in (1, 10, 50, 90, 99):
        out[f"q{q:02d}"] = np.quantile(a, q / 100, axis=0).tolist()
    return out


def export_lerobot(project: Project, log_paths: list[Path], output: Path,
                   skip_bad_lines: bool = False) -> ExportResult:
    """A LeRobotDataset in the codebase v3.0 layout (what LeRobot 0.4 and later load; see the module docstring)."""
    try:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CadenzaError('--format lerobot needs pyarrow and pandas: pip install -e ".[dataset]" (in ".[all]")') \
            from None
    logs = _read_logs(log_paths, skip_bad_lines)
    vocabs = {json.dumps(g.header["actions"], sort_keys=True) for g in logs}
    if len(vocabs) > 1:
        raise CadenzaError("the logs were run with different action vocabularies; export them separately")
    vocab = Vocabulary.from_dict(logs[0].header["actions"])
    records = build_records(project, logs)
    if output.exists() and not (output.is_dir()
                                and (not any(output.iterdir()) or (output / "meta" / "info.json").is_file())):
        raise CadenzaError(f"{output}: exists and is not a LeRobot dataset directory; choose another output path")

    # group records into missions (a mission = one LeRobot episode), in log order
    episodes: list[list[dict[str, Any]]] = []
    last: tuple[str, int] | None = None
    for r in records:
        key = (r["run_id"], r["episode"])
        if key != last:
            episodes.append([])
            last = key
        episodes[-1].append(r)
    tasks: dict[str, int] = {}
    for ep in episodes:
        tasks.setdefault(ep[0]["goal"], len(tasks))

    action_names = _action_layout(vocab)
    features: dict[str, Any] = {
        "observation.state": {"dtype": "float32", "shape": [len(STATE_NAMES)], "names": list(STATE_NAMES)},
        "action": {"dtype": "float32", "shape": [len(action_names)], "names": action_names},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
        "prompt": {"dtype": "string", "shape": [1], "names": None},
        "action_text": {"dtype": "string", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    schema = pa.schema([
        ("observation.state", pa.list_(pa.float32(), len(STATE_NAMES))),
        ("action", pa.list_(pa.float32(), len(action_names))),
        ("next.reward", pa.float32()), ("next.done", pa.bool_()), ("next.success", pa.bool_()),
        ("prompt", pa.string()), ("action_text", pa.string()), ("timestamp", pa.float32()),
        ("frame_index", pa.int64()), ("episode_index", pa.int64()), ("index", pa.int64()), ("task_index", pa.int64()),
    ])

    tmp = new_temp_dir(output.parent, f".{output.name}.", ".tmp")
    try:
        index = 0
        all_state, all_action, ep_rows = [], [], []
        frames: dict[tuple[int, int], list[dict[str, list[Any]]]] = {}  # (chunk, file) -> column blocks
        file_no = file_frames = 0
        for ei, ep in enumerate(episodes):
            n = len(ep)
            if file_frames and file_frames + n > FRAMES_PER_FILE:  # start the next data file
                file_no, file_frames = file_no + 1, 0
            chunk, fidx = divmod(file_no, CHUNK_SIZE)
            state = [state_vector(r["observation"]) for r in ep]
            action = [_action_vector(vocab, r["action_name"], r["params"]) for r in ep]
            frames.setdefault((chunk, fidx), []).append({
                "observation.state": state, "action": action,
                "next.reward": [float(r["reward"]) for r in ep], "next.done": [bool(r["done"]) for r in ep],
                "next.success": [bool(r["done"] and r["episode_success"]) for r in ep],
                "prompt": [r["prompt"] for r in ep], "action_text": [r["action"] for r in ep],
                "timestamp": [i / LEROBOT_FPS for i in range(n)], "frame_index": list(range(n)),
                "episode_index": [ei] * n, "index": list(range(index, index + n)),
                "task_index": [tasks[ep[0]["goal"]]] * n,
            })
            ep_rows.append({"episode_index": ei, "tasks": [ep[0]["goal"]], "length": n,
                            "data/chunk_index": chunk, "data/file_index": fidx,
                            "dataset_from_index": index, "dataset_to_index": index + n,
                            "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                            "cadenza/run_id": ep[0]["run_id"], "cadenza/episode": ep[0]["episode"],
                            "cadenza/success": bool(ep[0]["episode_success"])})
            index += n
            file_frames += n
            all_state += state
            all_action += action
        for (chunk, fidx), blocks in frames.items():
            cols = {name: [v for b in blocks for v in b[name]] for name in schema.names}
            path = tmp / LEROBOT_DATA_PATH.format(chunk_index=chunk, file_index=fidx)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(cols, schema=schema), path)
        meta = tmp / "meta"
        ep_path = tmp / LEROBOT_EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(ep_rows), ep_path)
        task_names = sorted(tasks, key=tasks.__getitem__)
        pd.DataFrame({"task_index": [tasks[t] for t in task_names]},
                     index=pd.Index(task_names, name="task")).to_parquet(meta / "tasks.parquet")
        info = {
            "codebase_version": LEROBOT_VERSION, "robot_type": "rescue-dog", "total_episodes": len(episodes),
            "total_frames": index, "total_tasks": len(tasks), "chunks_size": CHUNK_SIZE,
            "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": LEROBOT_FPS,
            "splits": {"train": f"0:{len(episodes)}"}, "data_path": LEROBOT_DATA_PATH, "video_path": None,
            "features": features,
        }
        (meta / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        (meta / "stats.json").write_text(json.dumps({"observation.state": _quantile_stats(all_state),
                                                     "action": _quantile_stats(all_action)}, indent=2) + "\n",
                                         encoding="utf-8")
        cadenza = {"task": logs[0].header["task"], "project": project.name,
                   "prompt_template": project.config.vla_finetune.prompt_template,
                   "actions": vocab.as_dict(), "logs": [str(g.path) for g in logs],
                   "note": "one frame per mission action step; timestamps count decisions, not seconds"}
        (meta / "cadenza.json").write_text(json.dumps(cadenza, indent=2) + "\n", encoding="utf-8")
        _swap_in(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bad = {str(g.path): g.bad_lines for g in logs if g.bad_lines}
    return ExportResult(output, len(records), len(episodes), len(logs), bad)


def _swap_in(tmp: Path, output: Path) -> None:
    """Replace ``output`` by the finished directory ``tmp`` with renames only."""
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.replace(output, old)
    os.replace(tmp, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export(project: Project, log_paths: list[Path], output: Path, fmt: str = "jsonl",
           skip_bad_lines: bool = False) -> ExportResult:
    if fmt not in FORMATS:
        raise CadenzaError(f"--format: unknown format {fmt!r}; available: {', '.join(FORMATS)}")
    if fmt == "lerobot":
        return export_lerobot(project, log_paths, output, skip_bad_lines)
    if output.is_dir():
        raise CadenzaError(f"{output}: is a directory; --format jsonl writes a file")
    return export_jsonl(project, log_paths, output, skip_bad_lines)
