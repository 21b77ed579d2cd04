"""``env finetune``: jsonl records, prompt templates, bad lines, the LeRobot-style dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cadenza.cli.main import app
from cadenza.errors import CadenzaError, exit_code_for
from cadenza.mission.finetune import export
from cadenza.mission.prompt import FIELDS, TemplateError, render, template_fields
from cadenza.mission.runlog import RunLogError, read_log
from cadenza.mission.runner import RunOptions, run_missions
from cadenza.mission.world import STATE_NAMES
from cadenza.project.config import load_project
from cadenza.project.scaffold import init_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("finetune") / "dog"
    init_project(root)
    return load_project(root)


@pytest.fixture(scope="module")
def logs(project) -> list[Path]:
    a = run_missions(project, RunOptions(episodes=2, seed=21))
    b = run_missions(project, RunOptions(episodes=1, seed=30, goal="search for the victim", perturb=1.0))
    return [a.log_path, b.log_path]


def _set_template(project, template: str):
    cfg = project.root / "cadenza.toml"
    text = cfg.read_text()
    start = text.index("prompt_template = ")
    cfg.write_text(text[:start] + f"prompt_template = {json.dumps(template)}\n")
    return load_project(project.root)


def test_jsonl_gives_one_record_per_step_with_the_rendered_prompt(project, logs, tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    res = export(project, logs, out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    steps = [s for p in logs for s in read_log(p).steps]
    assert res.records == len(records) == len(steps) and res.episodes == 3 and res.logs == 2
    for rec, step in zip(records, steps, strict=True):
        assert rec["prompt"] == step["prompt"]  # same template as the run: the same prompt
        assert rec["prompt"].startswith(project.prompt_path.read_text().strip()[:40])
        assert f"Goal: {step['goal']}" in rec["prompt"] and rec["prompt"].endswith("Next action:")
        assert rec["action"] == step["action_text"] and rec["reward"] == step["reward"]
    # return-to-go of a mission's first step is the mission's return
    ends = [r for p in logs for r in read_log(p).of_type("episode_end")]
    firsts = [r for r in records if r["step"] == 1]
    assert [r["return_to_go"] for r in firsts] == pytest.approx([e["return"] for e in ends], abs=1e-3)
    assert {r["episode_success"] for r in firsts} <= {True, False}
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temporary left behind


def test_the_project_template_is_applied_at_export(project, logs, tmp_path: Path) -> None:
    proj = _set_template(project, "[{project}] step {step}: {goal} | {observation_json} | did {history} | {actions}")
    try:
        out = tmp_path / "t.jsonl"
        export(proj, logs[:1], out)
        recs = [json.loads(line) for line in out.read_text().splitlines()]
        assert recs[0]["prompt"].startswith(f"[{proj.name}] step 1: ") and "did none" in recs[0]["prompt"]
        assert "walk_forward distance_m=[0.1, 3]" in recs[0]["prompt"]
        assert json.loads(recs[0]["prompt"].split(" | ")[1]) == recs[0]["observation"]
        assert f"did {recs[0]['action']}" in recs[1]["prompt"]
    finally:
        _set_template(project, "{system_prompt}\n\nGoal: {goal}\nObservation: {observation}\nNext action:")


def test_template_errors_are_clear(project, logs, tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"unknown field \{obs\}; available: \{system_prompt\}, \{goal\}"):
        template_fields("Goal: {goal} {obs}")
    with pytest.raises(TemplateError, match="positional field"):
        template_fields("{} {goal}")
    with pytest.raises(TemplateError, match="malformed template"):
        template_fields("{goal")
    assert template_fields("{{literal}} {goal!r} {step:03d}") == ["goal", "step"]
    assert render("{{x}} {step:03d}", {f: "" for f in FIELDS} | {"step": 7}) == "{x} 007"
    proj = _set_template(project, "Goal: {goal}\nSeen: {camera}")
    try:
        with pytest.raises(TemplateError, match=r"cadenza.toml: key 'vla_finetune.prompt_template': unknown field "
                                                r"\{camera\}"):
            export(proj, logs, tmp_path / "x.jsonl")
        assert not (tmp_path / "x.jsonl").exists()
        result = CliRunner().invoke(app, ["env", "finetune", str(proj.root), str(logs[0]),
                                          "-o", str(tmp_path / "y.jsonl")])
        assert exit_code_for(result.exception) == 2 and "available: {system_prompt}" in str(result.exception)
    finally:
        _set_template(project, "{system_prompt}\n\nGoal: {goal}\nObservation: {observation}\nNext action:")


def test_bad_lines_fail_with_file_and_line_or_are_skipped(project, logs, tmp_path: Path) -> None:
    lines = logs[0].read_text().splitlines(keepends=True)
    bad = tmp_path / "bad.log.jsonl"
    bad.write_text("".join([*lines[:4], '{"type": "step", "episode": 0, "st\n', *lines[4:-1], lines[-1][:20]]))
    out = tmp_path / "o.jsonl"
    with pytest.raises(RunLogError, match=rf"{bad}:5: "):
        export(project, [bad], out)
    assert not out.exists()
    res = export(project, [bad], out, skip_bad_lines=True)
    assert res.skipped == 2 and res.bad_lines == {str(bad): [5, len(lines) + 1]}
    assert res.records == len(read_log(logs[0]).steps)
    cli = CliRunner().invoke(app, ["env", "finetune", str(project.root), str(bad), "-o", str(tmp_path / "c.jsonl"),
                                   "--skip-bad-lines"])
    assert cli.exit_code == 0 and "skipped 2 bad line(s)" in cli.output
    with pytest.raises(CadenzaError, match="already given"):
        export(project, [logs[0], logs[0]], out)


# the fields of LeRobot's DatasetInfo (lerobot.datasets.utils, codebase v3.0): info.json holds these and no others
LEROBOT_INFO_FIELDS = {"codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks",
                       "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "data_path", "video_path",
                       "robot_type", "splits"}
LEROBOT_EPISODE_COLUMNS = {"episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
                           "dataset_from_index", "dataset_to_index", "meta/episodes/chunk_index",
                           "meta/episodes/file_index"}


def test_lerobot_v3_layout_loads_with_pyarrow_and_indices_agree(project, logs, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    out = tmp_path / "ds"
    res = export(project, logs, out, fmt="lerobot")
    info = json.loads((out / "meta" / "info.json").read_text())
    assert set(info) == LEROBOT_INFO_FIELDS and info["codebase_version"] == "v3.0" and info["fps"] == 1
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] is None and info["splits"] == {"train": f"0:{res.episodes}"}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "data/chunk-000/file-000.parquet", "meta/cadenza.json", "meta/episodes/chunk-000/file-000.parquet",
        "meta/info.json", "meta/stats.json", "meta/tasks.parquet"]
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert set(episodes[0]) >= LEROBOT_EPISODE_COLUMNS
    tasks = pd.read_parquet(out / "meta" / "tasks.parquet")  # how LeRobot reads it: the task text is the index
    assert tasks.index.name == "task" and list(tasks["task_index"]) == list(range(len(tasks)))
    assert info["total_episodes"] == len(episodes) == res.episodes == 3 and info["total_tasks"] == len(tasks)
    assert info["features"]["observation.state"]["shape"] == [len(STATE_NAMES)]
    table = pq.read_table(out / info["data_path"].format(chunk_index=0, file_index=0))
    assert set(info["features"]) == set(table.column_names)
    d = table.to_pydict()
    index = 0
    for ep in episodes:
        lo, hi, n = ep["dataset_from_index"], ep["dataset_to_index"], ep["length"]
        assert (lo, hi) == (index, index + n) and (ep["data/chunk_index"], ep["data/file_index"]) == (0, 0)
        rows = range(lo, hi)
        assert [d["episode_index"][i] for i in rows] == [ep["episode_index"]] * n
        assert [d["frame_index"][i] for i in rows] == list(range(n))
        assert [d["timestamp"][i] for i in rows] == [float(i) for i in range(n)]
        assert [d["index"][i] for i in rows] == list(rows)
        assert [d["task_index"][i] for i in rows] == [int(tasks.loc[ep["tasks"][0], "task_index"])] * n
        width = info["features"]["action"]["shape"][0]
        names = info["features"]["action"]["names"]
        for i in rows:
            vec, text = d["action"][i], d["action_text"][i]
            first_other = names.index(next(x for x in names if "." in x and not x.startswith("is.")))
            assert len(vec) == width and sum(vec[:first_other]) == 1.0
            assert names[vec.index(1.0)] == "is." + text.split()[0]
        assert d["next.done"][hi - 1] is True and not any(d["next.done"][lo:hi - 1])
        assert ep["cadenza/run_id"] and isinstance(ep["cadenza/success"], bool)
        index += n
    assert info["total_frames"] == index == res.records == table.num_rows
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert len(stats["observation.state"]["mean"]) == len(STATE_NAMES)
    assert {"min", "max", "mean", "std", "count", "q01", "q99"} <= set(stats["action"])
    # exporting again replaces the dataset; an unrelated directory is never replaced
    export(project, logs[:1], out, fmt="lerobot")
    assert json.loads((out / "meta" / "info.json").read_text())["total_episodes"] == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(CadenzaError, match="not a LeRobot dataset directory"):
        export(project, logs, other, fmt="lerobot")
    assert (other / "keep.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_finetune_cli_writes_jsonl(project, logs, tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(app, ["env", "finetune", str(project.root), *map(str, logs), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"to {out}" in result.output.replace("\n", "")
    assert len(out.read_text().splitlines()) == sum(len(read_log(p).steps) for p in logs)
    result = CliRunner().invoke(app, ["env", "finetune", str(project.root), str(logs[0]), "-o", str(out),
                                      "--format", "csv"])
    assert result.exit_code == 2 and "--format" in result.output and "'csv'" in result.output  # a usage error
