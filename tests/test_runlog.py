"""Run logs: schema round trip, append-only writes, crashes mid-run, malformed lines."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cadenza.mission.actions import ActionStep
from cadenza.mission.planners import PlannerInput, ScriptedPlanner
from cadenza.mission.runlog import REQUIRED, SCHEMA, RunLogError, RunLogWriter, read_log
from cadenza.mission.runner import RunOptions, mission_vocabulary, run_missions
from cadenza.project.config import load_project
from cadenza.project.scaffold import init_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("runlog") / "dog"
    init_project(root)
    return load_project(root)


@pytest.fixture(scope="module")
def run(project):
    return run_missions(project, RunOptions(episodes=2, seed=11))


def test_log_has_every_documented_record_and_key(project, run) -> None:
    log = read_log(run.log_path)
    h = log.header
    assert h["schema"] == SCHEMA and h["run_id"] == run.run_id and run.log_path.name == f"{run.run_id}.log.jsonl"
    assert run.log_path.parent == project.root / ".cadenza-env"
    assert h["config_hash"] == project.config_hash and h["task"] == "proxy" and h["policy"] == "scripted"
    assert h["controller"]["kind"] in ("base", "residual") and h["controller"]["base"] == "builtin:rescue-dog"
    assert h["seed"] == 11 and h["system_prompt"] == project.prompt_path.read_text()
    kinds = [r["type"] for r in log.records]
    assert kinds[0] == "episode_start" and kinds[-1] == "run_end" and log.complete
    eps = log.episodes()
    assert sorted(eps) == [0, 1]
    for i, ep in eps.items():
        assert ep["start"]["seed"] == 11 + i and ep["end"] is not None
        steps = ep["steps"]
        assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
        assert ep["end"]["steps"] == len(steps)
        assert ep["end"]["return"] == pytest.approx(sum(s["reward"] for s in steps), abs=1e-3)
        assert steps[-1]["done"] and not any(s["done"] for s in steps[:-1])
        for s in steps:
            for key in REQUIRED["step"]:
                assert key in s
            assert s["goal"] in s["prompt"] and s["observation_text"] in s["prompt"]
            assert s["trace"] and s["outcome"]["ticks"] >= 0
    end = log.records[-1]
    assert end["successes"] == run.successes and end["episodes"] == 2


def test_schema_round_trip_through_the_writer(tmp_path: Path) -> None:
    records = [
        {
            "type": "header",
            "schema": SCHEMA,
            "run_id": "r1",
            "time": "t",
            "project": "p",
            "config_hash": "c",
            "cadenza_version": "0",
            "policy": "scripted",
            "controller": {"kind": "base"},
            "seed": 0,
            "task": "proxy",
            "system_prompt": 'S\n"quoted" ünïcode',
            "actions": {},
        },
        {"type": "episode_start", "episode": 0, "seed": 0, "goal": "g", "site": {"rocks": [[1.0, 2.0, 0.2]]}},
        {
            "type": "step",
            "episode": 0,
            "step": 1,
            "goal": "g",
            "prompt": "line1\nline2",
            "action": {"name": "sit", "params": {}},
            "observation": {"a": [1, 2]},
            "observation_text": "x",
            "history": "none",
            "reward": -0.05,
            "collision": False,
            "done": True,
        },
        {"type": "episode_end", "episode": 0, "success": False, "steps": 1, "return": -0.05, "reason": "step limit"},
        {"type": "run_end", "episodes": 1, "successes": 0},
    ]
    path = tmp_path / "r1.log.jsonl"
    with RunLogWriter(path) as w:
        for r in records:
            w.write(r)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(records)  # one object per line, even with newlines inside strings
    log = read_log(path)
    assert [log.header, *log.records] == records
    with pytest.raises(RunLogError, match="already exists; run logs are never overwritten"):
        RunLogWriter(path)
    assert read_log(path).records == records[1:]


class _CrashingPlanner(ScriptedPlanner):
    """The scripted planner, until it raises at decision ``crash_at``."""

    def __init__(self, vocab, crash_at: int) -> None:
        super().__init__(vocab)
        self.calls, self.crash_at = 0, crash_at

    def plan(self, inp: PlannerInput) -> ActionStep:
        self.calls += 1
        if self.calls == self.crash_at:
            raise RuntimeError("planner fell over")
        return super().plan(inp)


def test_a_crash_mid_run_leaves_a_readable_log(project) -> None:
    vocab, _ = mission_vocabulary(project)
    planner = _CrashingPlanner(vocab, crash_at=4)
    with pytest.raises(RuntimeError, match="planner fell over"):
        run_missions(project, RunOptions(episodes=3, seed=2), planner=planner)
    path = max((project.root / ".cadenza-env").glob("*.log.jsonl"), key=lambda p: p.stat().st_mtime)
    log = read_log(path)
    assert len(log.steps) == 3 and not log.complete
    assert log.records[-1]["type"] == "aborted" and "planner fell over" in log.records[-1]["error"]
    assert log.episodes()[0]["end"] is None


def test_a_hard_kill_keeps_every_finished_step(project) -> None:
    """No exception handling, no flush at exit: the process dies inside the planner."""
    script = textwrap.dedent(f"""
        import os
        from cadenza.mission.planners import ScriptedPlanner
        from cadenza.mission.runner import RunOptions, mission_vocabulary, run_missions
        from cadenza.project.config import load_project

        project = load_project({str(project.root)!r})

        class Dying(ScriptedPlanner):
            n = 0
            def plan(self, inp):
                Dying.n += 1
                if Dying.n == 6:
                    os._exit(9)
                return super().plan(inp)

        run_missions(project, RunOptions(episodes=2, seed=40), planner=Dying(mission_vocabulary(project)[0]),
                     run_id="killed-run")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    log = read_log(project.root / ".cadenza-env" / "killed-run.log.jsonl")
    assert len(log.steps) == 5 and not log.complete
    assert log.records[-1]["type"] == "step"


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_malformed_and_truncated_lines_name_file_and_line(run, tmp_path: Path) -> None:
    lines = run.log_path.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = _write_lines(tmp_path / "bad.log.jsonl", [*lines[:3], "{not json\n", *lines[3:]])
    with pytest.raises(RunLogError, match=rf"{bad}:4: malformed JSON .*--skip-bad-lines"):
        read_log(bad)
    log = read_log(bad, skip_bad_lines=True)
    assert log.bad_lines == [4] and len(log.records) == len(lines) - 1
    cut = _write_lines(tmp_path / "cut.log.jsonl", [*lines[:5], lines[5][: len(lines[5]) // 2]])
    with pytest.raises(RunLogError, match=rf"{cut}:6: truncated line"):
        read_log(cut)
    assert read_log(cut, skip_bad_lines=True).bad_lines == [6]
    wrong = _write_lines(tmp_path / "wrong.log.jsonl", [lines[0], json.dumps({"type": "step", "episode": 0}) + "\n",
                                                       json.dumps([1, 2]) + "\n", json.dumps({"type": "nope"}) + "\n"])
    with pytest.raises(RunLogError, match=r":2: step record lacks step, goal"):
        read_log(wrong)
    assert read_log(wrong, skip_bad_lines=True).bad_lines == [2, 3, 4]
    headless = _write_lines(tmp_path / "headless.log.jsonl", lines[1:])
    with pytest.raises(RunLogError, match="before the header"):
        read_log(headless)
    with pytest.raises(RunLogError, match="no header record"):
        read_log(headless, skip_bad_lines=True)
    with pytest.raises(RunLogError, match="no such run log"):
        read_log(tmp_path / "missing.log.jsonl")


def test_run_ids_sort_in_start_order_within_one_second() -> None:
    from datetime import datetime, timezone

    from cadenza.mission.runlog import new_run_id

    t0 = datetime(2026, 12, 2, 15, 0, 0, 900_000, tzinfo=timezone.utc)
    t1 = datetime(2026, 12, 2, 15, 0, 0, 20_000, tzinfo=timezone.utc)
    ids = [new_run_id(t1) for _ in range(20)] + [new_run_id(t0) for _ in range(20)]
    assert sorted(ids)[:20] == sorted(ids[:20])  # every 20 ms id lists before every 900 ms id
    assert new_run_id(t0).startswith("20261202-150000-900-")
