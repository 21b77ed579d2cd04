"""Goals with objectives: the config schema, mission success by objective, the scripted planner's goals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cadenza.mission.runlog import read_log
from cadenza.mission.runner import RunOptions, run_missions
from cadenza.project.config import ConfigError, load_project
from tests.conftest import ROOT, run_cli

EXAMPLE = ROOT / "examples" / "rescue-dog"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "dog"
    root.mkdir()
    for name in ("cadenza.toml", "SYSTEM_PROMPT.md"):
        shutil.copy(EXAMPLE / name, root / name)
    return root


def test_each_goal_is_judged_by_its_objective(project: Path) -> None:
    proj = load_project(project)
    assert proj.config.mission.objectives == {
        "enter the debris field": "in_debris", "search for the victim": "reach_victim",
        "cross the rubble and climb onto the ledge": "on_ledge",
        "reach the victim and sit beside them": "sit_by_victim"}
    run = run_missions(proj, RunOptions(episodes=4, seed=2))  # site 2: debris first, then the ledge
    assert [e.success for e in run.episodes] == [True, True, True, True]
    by_ep = {}
    for s in read_log(run.log_path).steps:
        by_ep.setdefault(s["episode"], []).append(s)
    debris, search, ledge, sit = (by_ep[i][-1] for i in range(4))
    assert debris["posture"] == "crawling" and debris["action"]["name"] == "crawl_forward"
    assert ledge["on_ledge"] and ledge["action"]["name"] == "climb_step"
    assert sit["action"]["name"] == "sit" and sit["outcome"]["reached"]
    assert search["success"]
    # the debris and ledge missions stop where their objective is met: fewer steps than the full search
    assert len(by_ep[0]) < len(by_ep[1]) and len(by_ep[2]) < len(by_ep[1])
    assert [e.reason for e in run.episodes] == ["objective met: be inside the debris field", "victim reached",
                                                "objective met: be on the ledge",
                                                "objective met: reach the victim and sit beside them"]


def test_reaching_the_victim_is_not_enough_when_the_goal_asks_to_sit(project: Path) -> None:
    from cadenza.mission.actions import ActionStep
    from cadenza.mission.planners import PlannerInput, ScriptedPlanner
    from cadenza.mission.runner import mission_vocabulary

    proj = load_project(project)
    vocab, _ = mission_vocabulary(proj)

    class NeverSits(ScriptedPlanner):  # the full search, refusing to sit: the walk reaches the victim
        def plan(self, inp: PlannerInput) -> ActionStep:
            step = self._search(inp)
            return step if step.name != "sit" else ActionStep("turn_left", {"degrees": 90.0})

    run = run_missions(proj, RunOptions(episodes=1, seed=2, goal="reach the victim and sit beside them"),
                       planner=NeverSits(vocab, objective="sit_by_victim"))
    assert not run.episodes[0].success
    steps = read_log(run.log_path).steps
    assert any(s["outcome"]["reached"] for s in steps), "the victim was reached on the way"
    assert len(steps) > 1 + next(i for i, s in enumerate(steps) if s["outcome"]["reached"])


@pytest.mark.parametrize(("line", "needle"), [
    ('"enter the debris field" = "inside"', "'mission.objectives.enter the debris field'"),
    ('"fly away" = "in_debris"', "objectives: 'fly away' is not one of mission.goals"),
])
def test_objective_config_errors_name_the_key(project: Path, line: str, needle: str) -> None:
    cfg = project / "cadenza.toml"
    text = cfg.read_text().replace('"enter the debris field" = "in_debris"', line)
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=r"cadenza\.toml") as e:
        load_project(project)
    assert needle in str(e.value)


def test_scripted_planner_refuses_goals_it_does_not_know(project: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["env", "run", project, "--headless", "--goal", "make tea"], capsys, monkeypatch)
    assert code == 1 and out == ""
    assert "--goal: the scripted planner knows only the project's goals" in err and "'search for the victim'" in err
    assert len(err.strip().splitlines()) == 1
    assert not (project / ".cadenza-env").exists() or not list((project / ".cadenza-env").glob("*.log.jsonl"))
    # listed goals are compared normalised (case, punctuation, spaces)
    code, out, err = run_cli(["env", "run", project, "--headless", "--goal", "  Enter the DEBRIS field! "],
                             capsys, monkeypatch)
    assert code == 0, err
    assert "success 1/1" in out
