"""Prompt training, offline: the rules format both planners read, the miner on real run logs, the invariants,
and ``cadenza env train --offline`` end to end (screen, paired validation, registry, history, rollback)."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from cadenza.cli.main import main
from cadenza.governance.registry import Registry
from cadenza.judge.invariants import check_candidate
from cadenza.judge.mine import mine
from cadenza.judge.propose import offline_candidates
from cadenza.judge.runs import NoRunsError, load_runs
from cadenza.judge.train import VALIDATION_SEED, TrainOptions, train_prompt
from cadenza.mission.planners import PlannerInput, ScriptedPlanner, ScriptedRules
from cadenza.mission.rules import RULE_PARAMS, Rule, read_settings, rule_lines, with_rules
from cadenza.mission.runner import mission_vocabulary
from cadenza.project.config import load_project
from tests.conftest import ROOT, run_cli

EXAMPLE = ROOT / "examples" / "rescue-dog"
VOCAB = ["walk_forward", "crawl_forward", "turn_left", "turn_right", "climb_step", "sit", "stand"]


def cli(args: list[str]) -> int:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["cadenza", *args])
        try:
            main()
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else 0
    return 0


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/rescue-dog with one real run log: 12 missions at perturb 1.0, base alone."""
    root = tmp_path_factory.mktemp("judge") / "dog"
    shutil.copytree(EXAMPLE, root)
    assert cli(["env", "run", str(root), "--headless", "--episodes", "12", "--perturb", "1.0"]) == 0
    return root


# ---------------------------------------------------------------------------------------------- the rules format
def test_rules_round_trip_and_replace() -> None:
    base = EXAMPLE.joinpath("SYSTEM_PROMPT.md").read_text()
    one = with_rules(base, [Rule("max_leg_m", 1.0, "step-after-walk_forward, 7 of 50 missions")])
    assert one.startswith(base.rstrip("\n")) and "\n## Rules\n" in one
    assert read_settings(one) == {"max_leg_m": 1.0}
    assert "(fixes step-after-walk_forward, 7 of 50 missions)" in rule_lines(one)[0]
    two = with_rules(one, [Rule("max_leg_m", 0.8), Rule("at_edge_deg", 30.0)])
    assert read_settings(two) == {"max_leg_m": 0.8, "at_edge_deg": 30.0} and len(rule_lines(two)) == 2
    # other headings end the section; unknown names and text outside it are ignored; values are clamped
    text = "Intro `max_leg_m = 2`\n\n# rules\n- a `max_leg_m = 99` b `bogus = 1`\n# Other\n- `aim_deg = 5`\n"
    assert read_settings(text) == {"max_leg_m": RULE_PARAMS["max_leg_m"].hi}


def test_every_rule_parameter_is_a_scripted_planner_setting() -> None:
    assert set(RULE_PARAMS) <= {f.name for f in fields(ScriptedRules)}
    defaults = ScriptedRules()
    for key, p in RULE_PARAMS.items():
        assert p.lo <= getattr(defaults, key) <= p.hi, key


def test_the_scripted_planner_reads_the_rules_from_its_prompt() -> None:
    proj = load_project(EXAMPLE)
    vocab, _ = mission_vocabulary(proj)
    obs = {"posture": "standing", "on_ledge": False, "victim": {"distance_m": 9.0, "bearing_deg": 0},
           "debris": {"state": "ahead", "edge_m": 3.0, "depth_m": 1.0, "normal_deg": 0},
           "step": {"state": "ahead", "edge_m": 8.0, "normal_deg": 0}, "rocks": []}

    def first(prompt: str) -> tuple[str, dict[str, float]]:
        p = ScriptedPlanner(vocab)
        step = p.plan(PlannerInput("g", prompt, obs, "", vocab, (), 1))
        return step.name, step.params

    plain = first("no rules here")
    assert plain == ("walk_forward", {"distance_m": 2.0})  # the default: walk to the long-approach stop, 1 m short
    ruled = first(with_rules("prompt", [Rule("max_leg_m", 1.2), Rule("approach_m", 0.6)]))
    assert ruled == ("walk_forward", {"distance_m": 1.2})


# ---------------------------------------------------------------------------------------------- the miner
def test_miner_groups_real_failures_with_evidence(logged: Path) -> None:
    proj = load_project(logged)
    runs = load_runs(proj)
    assert len(runs.missions) == 12 and len(runs.logs) == 1 and runs.bad_lines == 0
    report = mine(runs)
    assert report.failures == len(runs.failures) > 0
    per_mission = [m for m in report.modes if m.id != "invalid-step"]
    assert sum(m.missions for m in per_mission) == report.failures
    for m in per_mission:
        assert m.of == 12 and m.evidence and m.zones
        for ev in m.evidence:
            mission = next(x for x in runs.missions if x.episode == ev.episode)
            assert not mission.success and mission.steps[-1].index == ev.step and mission.steps[-1].text == ev.action
    assert report.body.walks > 0 and "p90" in report.body.turn_shift_m


def test_bad_lines_are_skipped_and_counted(logged: Path, tmp_path: Path) -> None:
    root = tmp_path / "dog"
    shutil.copytree(logged, root)
    log = next((root / ".cadenza-env").glob("*.log.jsonl"))
    with open(log, "a", encoding="utf-8") as f:
        f.write('{"type": "step", "oops"\nnot json at all\n')
    (root / ".cadenza-env" / "20000101-000000-000000.log.jsonl").write_text("garbage\n")
    runs = load_runs(load_project(root))
    assert runs.bad_lines == 2 and len(runs.unreadable) == 1 and len(runs.missions) == 12


def test_no_runs_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "dog"
    shutil.copytree(EXAMPLE, root)
    with pytest.raises(NoRunsError, match="no run logs"):
        load_runs(load_project(root))


# ---------------------------------------------------------------------------------------------- invariants
def test_invariants() -> None:
    inc = EXAMPLE.joinpath("SYSTEM_PROMPT.md").read_text()
    ok = with_rules(inc, [Rule("max_leg_m", 1.0, "x, 1 of 2 missions")])
    assert check_candidate(inc, ok, VOCAB, ["standing; victim 6.1 m, 12 deg right"], set(RULE_PARAMS)) == []
    dropped = ok.replace("`climb_step`", "climbing")
    assert "drops action(s) from the vocabulary: climb_step" in check_candidate(inc, dropped, VOCAB, [])
    reformatted = ok.replace("Answer with exactly one action step", "Answer with a plan")
    assert any("output-format line" in p for p in check_candidate(inc, reformatted, VOCAB, []))
    long = ok + "- be careful\n" * 40
    assert any("1.5x" in p for p in check_candidate(inc, long, VOCAB, []))
    obs = "standing; victim 6.1 m, 12 deg right; debris field 2.30 m ahead, 0.8 m deep (normal 5 deg right)"
    copied = ok + f"- Remember: {obs}\n"
    assert any("copies log text" in p for p in check_candidate(inc, copied, VOCAB, [obs]))
    invented = ok + "- Use `jump_over 1` on rocks.\n"
    assert any("outside the vocabulary: jump_over" in p for p in check_candidate(inc, invented, VOCAB, []))


def test_offline_candidates_name_the_failure_they_fix(logged: Path) -> None:
    proj = load_project(logged)
    runs = load_runs(proj)
    report = mine(runs)
    inc = (logged / "SYSTEM_PROMPT.md").read_text()
    cands = offline_candidates(report, inc)
    assert cands
    ids = {m.id for m in report.modes}
    for c in cands:
        assert c.source == "offline" and c.rules
        assert check_candidate(inc, c.text, VOCAB, runs.log_texts(), set(RULE_PARAMS)) == []
        for r in c.rules:
            assert r.fixes.split(",")[0].split(" +")[0] in ids and f"(fixes {r.fixes})" in c.text
            assert read_settings(c.text)[r.key] == r.value


# ---------------------------------------------------------------------------------------------- env train
@pytest.mark.slow
def test_env_train_offline_end_to_end(logged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "dog"
    shutil.copytree(logged, root)
    original = (root / "SYSTEM_PROMPT.md").read_bytes()
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    code, out, err = run_cli(["env", "train", root, "--offline", "--screen", "6", "--validation", "12"], capsys,
                             monkeypatch)
    assert code in (0, 3, 4), err
    assert "[proxy, offline, scripted planner, perturb 1]" in out.replace("\n", " ") or "offline" in out
    reg = Registry(root)
    versions = reg.versions("prompt")
    ledger = reg.ledger("prompt")
    if "no candidate beat the incumbent" in out:
        assert versions == [] and (root / "SYSTEM_PROMPT.md").read_bytes() == original
        return
    # a validated candidate: both versions registered, the incumbent's bytes kept as v0001
    assert versions == ["v0001", "v0002"]
    assert reg.path("prompt", "v0001", "SYSTEM_PROMPT.md").read_bytes() == original
    meta = reg.manifest("prompt", "v0002")["metadata"]
    assert meta["judge"] == "offline" and meta["rules"] and meta["logs"]
    assert meta["validation"]["seeds"] == [VALIDATION_SEED, VALIDATION_SEED + 11]
    verdict = next(e for e in ledger if e["event"] == "verdict")
    assert f"{verdict['verdict']}:" in out and "paired difference" in out and "before (incumbent)" in out
    assert (code, verdict["verdict"]) in ((0, "DEPLOY"), (3, "BLOCK"), (4, "NEEDS_DATA"))
    promoted = (root / "SYSTEM_PROMPT.md").read_bytes() != original
    assert promoted == (verdict["verdict"] == "DEPLOY")
    code, out, _ = run_cli(["env", "history", root, "--kind", "prompt"], capsys, monkeypatch)
    assert code == 0 and "v0001" in out and "v0002" in out
    # a second train on the same runs has nothing new to fix: the incumbent stays, nothing is registered
    after = (root / "SYSTEM_PROMPT.md").read_bytes()
    code, out, _ = run_cli(["env", "train", root, "--offline", "--screen", "6", "--validation", "12"], capsys,
                           monkeypatch)
    assert code == 0 and "nothing new to fix" in out.replace("\n", " ")
    assert reg.versions("prompt") == versions and (root / "SYSTEM_PROMPT.md").read_bytes() == after
    if promoted:
        code, _, _ = run_cli(["env", "rollback", root, "prompt"], capsys, monkeypatch)
        assert code == 0 and (root / "SYSTEM_PROMPT.md").read_bytes() == original
    # evaluation logs never land in .cadenza-env
    assert len(list((root / ".cadenza-env").glob("*.log.jsonl"))) == 1


def test_nothing_to_fix_keeps_the_incumbent(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "dog"
    shutil.copytree(EXAMPLE, root)
    # perturbation 0: the scripted planner and the base succeed on these seeds
    assert cli(["env", "run", str(root), "--headless", "--episodes", "3", "--seed", "1"]) == 0
    runs = load_runs(load_project(root))
    assert runs.failures == []
    original = (root / "SYSTEM_PROMPT.md").read_bytes()
    code, out, _ = run_cli(["env", "train", root, "--offline"], capsys, monkeypatch)
    assert code == 0 and "nothing to fix" in out
    assert (root / "SYSTEM_PROMPT.md").read_bytes() == original and Registry(root).versions("prompt") == []


def test_env_train_without_runs_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "dog"
    shutil.copytree(EXAMPLE, root)
    code, out, err = run_cli(["env", "train", root, "--offline"], capsys, monkeypatch)
    assert code == 1 and "no run logs" in err and len(err.strip().splitlines()) == 1 and out == ""


def test_dry_run_saves_nothing(logged: Path, tmp_path: Path) -> None:
    root = tmp_path / "dog"
    shutil.copytree(logged, root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    res = train_prompt(load_project(root), TrainOptions(dry_run=True))
    assert res.chosen is not None and res.diff.startswith("--- SYSTEM_PROMPT.md (incumbent)")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert json.dumps(res.report.as_dict())  # the report is plain JSON


def test_merge_combines_rules_on_different_parameters_only() -> None:
    from cadenza.judge.propose import Candidate, merge

    inc = EXAMPLE.joinpath("SYSTEM_PROMPT.md").read_text()

    def cand(key: str, value: float) -> Candidate:
        rule = Rule(key, value, "step-after-turn, 4 of 50 missions")
        return Candidate(with_rules(inc, [rule]), [rule], "offline", ["step-after-turn"])

    assert merge(cand("max_leg_m", 0.7), cand("max_leg_m", 1.0), inc) is None
    both = merge(cand("max_leg_m", 1.0), cand("detour_margin_m", 0.55), inc)
    assert both is not None and read_settings(both.text) == {"max_leg_m": 1.0, "detour_margin_m": 0.55}
    assert check_candidate(inc, both.text, VOCAB, [], set(RULE_PARAMS)) == []  # two rules fit the 1.5x limit
