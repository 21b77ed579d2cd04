"""Governed training end to end on the real proxy, with small budgets."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cadenza.governance.registry import Registry
from cadenza.project.config import load_project
from cadenza.residual.network import ResidualActor, ResidualArch
from cadenza.residual.policy import load_policy, load_promoted_residual, save_policy
from cadenza.residual.train import train_residual
from tests.conftest import make_project

CLI = [sys.executable, "-m", "cadenza.cli.main"]


def _weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for t in module.state_dict().values():
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_training_never_touches_the_base(tmp_path: Path) -> None:
    from tests.fixtures import torch_base

    proj_dir = make_project(tmp_path / "dog", **{
        "base.source": '"tests.fixtures.torch_base:policy"', "task.num_envs": "16", "residual.hidden_dim": "32",
        "governance.eval_episodes": "40", "governance.min_episodes": "20", "governance.max_eval_episodes": "120",
    })
    before = _weights_hash(torch_base.NET)
    res = train_residual(load_project(proj_dir), steps=8192, seed=3)
    assert res.env_steps >= 8192
    assert _weights_hash(torch_base.NET) == before
    assert all(p.grad is None for p in torch_base.NET.parameters())
    report = res.report_path.read_text()
    assert '"task": "proxy"' in report and res.curve_path.stat().st_size > 1000


@pytest.mark.slow
def test_resume_after_interruption(small_project: Path) -> None:
    proj = load_project(small_project)
    calls = []

    def stop_after_three(row: dict, plan: object) -> None:  # round 2 is the first at the target level: a card
        calls.append(row["round"])
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_residual(proj, steps=16384, on_round=stop_after_three)
    assert (small_project / "residual" / "run" / "checkpoint.pt").is_file()
    res = train_residual(proj, steps=16384)
    assert res.resumed_from == 3
    assert res.env_steps >= 16384
    # the validation's env steps go on from the interrupted run's (its card was run; so is the base's again)
    history = json.loads(res.report_path.read_text())["history"]
    spent = [h["validation_env_steps"] for h in history]
    assert "val_margin" in history[2] and spent == sorted(spent)
    assert spent[-1] == res.validation_env_steps == spent[3] > spent[2] > 0  # round 3 (resumed) had a card too
    assert Registry(small_project).latest("residual") == "v0001"


def _harmful_policy(path: Path) -> None:
    """A residual that always pushes against the forward command at full strength."""
    arch = ResidualArch(obs_dim=18, act_dim=3, hidden_dim=16, gate=False, alpha=0.6)
    actor = ResidualActor(arch)
    with torch.no_grad():
        for p in actor.net.parameters():
            p.zero_()
        actor.net[-1].bias[:] = torch.tensor([-1.0, 1.0, 1.0])
    save_policy(actor, path)


@pytest.mark.slow
def test_harmful_residual_is_blocked_and_baseline_stays(small_project: Path, tmp_path: Path) -> None:
    proj = load_project(small_project)
    reg = Registry(small_project)
    good = tmp_path / "zero.pt"
    save_policy(ResidualActor(ResidualArch(obs_dim=18, act_dim=3, hidden_dim=16)), good)
    v_good = reg.register("residual", {"policy.pt": good})
    reg.promote("residual", v_good)
    bad = tmp_path / "harmful.pt"
    _harmful_policy(bad)
    out = subprocess.run([*CLI, "env", "residual", "eval", str(small_project), "--policy", str(bad), "--promote",
                          "--episodes", "100"], capture_output=True, text=True)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "BLOCK" in out.stdout and "FAIL" in out.stdout
    assert reg.baseline("residual") == v_good
    assert load_promoted_residual(proj).version == v_good
    assert (small_project / "residual" / "residual_policy.pt").read_bytes() == good.read_bytes()


@pytest.mark.slow
def test_too_few_episodes_gives_needs_data(small_project: Path, tmp_path: Path) -> None:
    p = tmp_path / "zero.pt"
    save_policy(ResidualActor(ResidualArch(obs_dim=18, act_dim=3, hidden_dim=16)), p)
    out = subprocess.run([*CLI, "env", "residual", "eval", str(small_project), "--policy", str(p), "--episodes", "10",
                          "--max-episodes", "10"], capture_output=True, text=True)
    assert out.returncode == 4, out.stdout + out.stderr
    assert "NEEDS_DATA" in out.stdout and "only 10 episodes" in out.stdout


def test_corrupt_policy_file_is_refused(small_project: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04not a pickle")
    out = subprocess.run([*CLI, "env", "residual", "eval", str(small_project), "--policy", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "not a loadable residual policy" in out.stderr and "Traceback" not in out.stderr
    assert Registry(small_project).latest("residual") is None


def test_eval_without_training_is_a_clear_error(small_project: Path) -> None:
    out = subprocess.run([*CLI, "env", "residual", "eval", str(small_project)], capture_output=True, text=True)
    assert out.returncode == 1 and "no residual trained yet" in out.stderr


def test_policy_file_round_trip_and_weights_only(tmp_path: Path) -> None:
    arch = ResidualArch(obs_dim=18, act_dim=3, hidden_dim=8)
    actor = ResidualActor(arch)
    actor.norm.update(np.random.default_rng(0).normal(size=(100, 18)))
    p = tmp_path / "p.pt"
    save_policy(actor, p, {"k": 1})
    loaded, meta = load_policy(p)
    assert meta == {"k": 1}
    x = torch.randn(4, 18)
    b = torch.zeros(4, 3)
    assert torch.equal(actor(x, b), loaded(x, b))
    assert torch.equal(actor.norm.mean, loaded.norm.mean)  # the normaliser travels with the policy


@pytest.mark.slow
def test_train_cli_end_to_end(small_project: Path) -> None:
    out = subprocess.run([*CLI, "env", "residual", "train", str(small_project), "--steps", "8192"],
                         capture_output=True, text=True)
    assert out.returncode in (0, 3, 4), out.stderr
    assert "verdict:" in out.stdout and "[proxy]" in out.stdout
    hist = subprocess.run([*CLI, "env", "history", str(small_project)], capture_output=True, text=True)
    assert hist.returncode == 0 and "v0001" in hist.stdout and "verdict" in hist.stdout
    report = json.loads((small_project / "residual" / "train_report.json").read_text())
    assert report["heldout_block"] == 0 and report["scorecard"]["block"] == 0
    assert report["scorecard_episodes"] == report["scorecard"]["episodes"] >= 60
    assert any("val_margin" in h for h in report["history"])  # the last round always gets a validation card
    assert report["best_env_steps"] <= report["env_steps"]
    # the evaluation outside the training budget is counted: every card's episodes, plus the base's run for them
    cards = [h for h in report["history"] if "val_margin" in h]
    spent = [h["validation_env_steps"] for h in report["history"]]
    assert spent == sorted(spent) and report["validation_env_steps"] == spent[-1]
    assert report["validation_env_steps"] > sum(h["val_env_steps"] for h in cards) >= sum(
        h["val_episodes"] for h in cards)
    # candidate and base alone on every scorecard episode, each at least one step and at most the horizon
    assert 2 * 350 * report["scorecard_episodes"] >= report["scorecard_env_steps"] >= 2 * report["scorecard_episodes"]
    assert 0 < report["validation_wall_s"] < report["wall_s"]
    assert (f"{report['validation_env_steps']:,} env steps of validation cards "
            f"({report['validation_wall_s']:.1f} s of the {report['wall_s']:.1f} s), "
            f"{report['scorecard_env_steps']:,} of scorecard") in out.stdout
    assert f"episodes per policy ({report['scorecard_env_steps']:,} env steps in all)" in " ".join(out.stdout.split())

    # eval right after train draws the next block: new episodes, a different table, both in the ledger
    ev = subprocess.run([*CLI, "env", "residual", "eval", str(small_project)], capture_output=True, text=True)
    assert ev.returncode in (0, 3, 4), ev.stderr
    assert "held-out block 1" in ev.stdout
    assert " env steps in all), held-out block 1" in " ".join(ev.stdout.split())  # what eval's scoring ran
    ev2 = subprocess.run([*CLI, "env", "residual", "eval", str(small_project)], capture_output=True, text=True)
    assert "held-out block 2" in ev2.stdout
    again = subprocess.run([*CLI, "env", "residual", "eval", str(small_project), "--seed", "0"],
                           capture_output=True, text=True)
    assert "held-out block 0 (reused on purpose: --seed)" in again.stdout
    reg = Registry(small_project)
    assert reg.blocks_used("residual", "v0001") == [0, 1, 2, 0]
    verdicts = [e for e in reg.ledger("residual") if e["event"] == "verdict"]
    assert [e["block"] for e in verdicts] == [0, 1, 2, 0] and all(e["episodes"] >= 60 for e in verdicts)
    train_cand = report["scorecard"]["metrics"]["candidate"]
    hist = subprocess.run([*CLI, "env", "history", str(small_project)], capture_output=True, text=True)
    assert "block 1" in hist.stdout and "block 0" in hist.stdout
    assert train_cand["episodes"] >= 60


def test_eval_blocks_hold_different_episodes(small_project: Path) -> None:
    """Two held-out blocks are different episodes: the base alone's per-episode outcomes differ."""
    from cadenza.base.loader import load_base
    from cadenza.governance.seeds import heldout_seed
    from cadenza.residual.evaluate import evaluate
    from cadenza.tasks.factory import make_task

    proj = load_project(small_project)
    base = load_base("builtin:rescue-dog", proj.root, 3)

    def mk(n: int):
        return make_task(proj, num_envs=n, level=1.0)

    b0 = evaluate(mk, base, None, episodes=64, seed=heldout_seed(0), chunk=32)
    b0_again = evaluate(mk, base, None, episodes=64, seed=heldout_seed(0), chunk=32)
    b1 = evaluate(mk, base, None, episodes=64, seed=heldout_seed(1), chunk=32)
    tail = evaluate(mk, base, None, episodes=32, seed=heldout_seed(0), chunk=32, first_chunk=1)
    assert np.array_equal(b0.success, b0_again.success) and b0.mean_length == b0_again.mean_length
    assert b0.mean_length != b1.mean_length  # another block: other layouts and robots
    assert np.array_equal(b0.success[32:], tail.success)  # a later look continues the block where it stopped


def test_a_card_that_would_stop_training_is_confirmed_on_other_episodes(tmp_path: Path) -> None:
    """A validation card that passes with the stop margin is scored again on as many episodes of the validation
    block that no card used; the round counts with the worse card, and the stop says it was confirmed."""
    from cadenza.residual.validation import ValidationCard, confirmed

    proj_dir = make_project(tmp_path / "dog", **{
        "task.num_envs": "16", "residual.hidden_dim": "32", "governance.success_threshold": "0.2",
        "governance.max_collision_rate": "0.6", "governance.regression_margin": "0.3",
        "governance.eval_episodes": "60", "governance.min_episodes": "50",
        "governance.max_eval_episodes": "180", "governance.validation_episodes": "64",
    })
    res = train_residual(load_project(proj_dir), steps=8192 * 3, seed=0, fresh=True)
    history = json.loads(res.report_path.read_text())["history"]
    rows = [h for h in history if "val_confirm" in h]
    assert rows, "a card at a 20% bar passes: it must have been confirmed"
    row = rows[0]
    first, again = row["val_first"], row["val_confirm"]
    assert first["val_episodes"] == again["val_episodes"] == 64
    assert row["val_margin"] == min(first["val_margin"], again["val_margin"])
    assert res.best_env_steps == row["env_steps_total"]
    assert res.stop_reason.startswith("validation card passes every gate, confirmed on 64 other episodes")

    def card(margin: float, passes: bool, failing: list[str]) -> ValidationCard:
        return ValidationCard(episodes=100, success=0.9 + margin, collision=0.05, margin=margin, passes=passes,
                              failing=failing)

    c = confirmed(card(0.03, True, []), card(-0.01, False, ["success"]))
    assert c.margin == -0.01 and not c.passes and c.failing == ["success"]
    assert confirmed(card(0.02, True, []), card(0.04, True, [])).margin == 0.02


def test_the_confirmation_card_looks_at_episodes_no_card_used(small_project: Path) -> None:
    """Validator.score(confirm=True) runs the validation block's next episodes: exactly what evaluating the block
    from the chunk after the card's gives, and not the card's own."""
    from cadenza.base.loader import load_base
    from cadenza.governance.seeds import VALIDATION_SEED
    from cadenza.residual.evaluate import evaluate
    from cadenza.residual.policy import ResidualController
    from cadenza.residual.validation import Validator
    from cadenza.tasks.factory import make_task
    from cadenza.tasks.proxy.rescue_dog import ACT_DIM, OBS_DIM

    proj = load_project(small_project)
    base = load_base("builtin:rescue-dog", proj.root, 3)
    torch.manual_seed(0)
    ctl = ResidualController(ResidualActor(ResidualArch(obs_dim=OBS_DIM, act_dim=ACT_DIM, hidden_dim=32)), "x")
    v = Validator(proj, base, episodes=32)
    card, again = v.score(ctl), v.score(ctl, confirm=True)
    later = evaluate(lambda n: make_task(proj, num_envs=n, level=1.0), base, ctl, episodes=32, seed=VALIDATION_SEED,
                     chunk=v.chunk, first_chunk=-(-32 // v.chunk))
    assert (again.success, again.collision) == (later.success_rate, later.collision_rate)
    same = evaluate(lambda n: make_task(proj, num_envs=n, level=1.0), base, ctl, episodes=32, seed=VALIDATION_SEED,
                    chunk=v.chunk)
    assert (card.success, card.collision) == (same.success_rate, same.collision_rate)
    assert not np.array_equal(later.success, same.success)
    # what the validator spent on the task: both cards' episodes and the base's run, step for step
    assert (card.env_steps, again.env_steps) == (same.env_steps, later.env_steps)
    assert v.env_steps == card.env_steps + again.env_steps + v.base_stats.env_steps


def test_a_scoring_run_counts_the_env_steps_of_its_episodes(small_project: Path) -> None:
    """``EvalStats.env_steps`` is the sum of the episodes' lengths, counted here by stepping the same episodes by
    hand (an env that finished is still stepped with the others, and not counted)."""
    from cadenza.base.loader import load_base
    from cadenza.governance.seeds import VALIDATION_SEED, chunk_seed
    from cadenza.residual.evaluate import evaluate
    from cadenza.tasks.factory import make_task

    proj = load_project(small_project)
    base = load_base("builtin:rescue-dog", proj.root, 3)
    stats = evaluate(lambda n: make_task(proj, num_envs=n, level=1.0), base, None, episodes=24,
                     seed=VALIDATION_SEED, chunk=24)
    task = make_task(proj, num_envs=24, level=1.0)
    obs, _ = task.reset(seed=chunk_seed(VALIDATION_SEED, 0))
    length, running = np.zeros(24, int), np.ones(24, bool)
    while running.any():
        obs, _, term, trunc, _ = task.step(base(obs))
        length += running
        running &= ~(term | trunc)
    task.close()
    assert stats.env_steps == int(length.sum()) > 24
