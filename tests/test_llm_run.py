"""``env run --policy llm`` and ``env train`` with the LLM judge, end to end against a real chat-completions
server on 127.0.0.1; the API key never reaches a file or the output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("openai")

from cadenza.governance.registry import Registry
from cadenza.mission.rules import Rule, read_settings, with_rules
from cadenza.mission.runlog import read_log
from tests.chat_server import Reply, chat_server, rescue_model
from tests.conftest import ROOT, run_cli

KEY = "gsk_e2e_TOPSECRET_9f8e7d6c5b4a"
ENV = "CADENZA_E2E_KEY"
EXAMPLE = ROOT / "examples" / "rescue-dog"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV, KEY)
    root = tmp_path / "dog"
    shutil.copytree(EXAMPLE, root)
    return root


def llm_flags(url: str) -> list[str]:
    return ["--base-url", url, "--model", "rule-model", "--api-key-env", ENV, "--retries", "0", "--timeout", "5"]


def judge_or_plan(candidate: str):  # type: ignore[no-untyped-def]
    def model(messages: list[dict[str, str]]) -> str:
        if "improve the system prompt" in messages[0]["content"]:
            return json.dumps({"failure_modes": [{"id": "step-after-walk_forward", "diagnosis": "long walks drift",
                                                  "rule": "short legs"}], "prompt": candidate})
        return rescue_model(messages)
    return model


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_env_run_policy_llm_succeeds_and_counts(project: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with chat_server(model=rescue_model) as srv:
        args = ["env", "run", project, "--headless", "--policy", "llm", "--episodes", "3", *llm_flags(srv.url)]
        code, out, err = run_cli(args, capsys, monkeypatch)
        assert code == 0, err
        first = len(srv.requests)
        code2, out2, _ = run_cli(args, capsys, monkeypatch)  # the same missions again: every reply from the cache
        assert code2 == 0 and len(srv.requests) == first
    assert "success" in out and f" {first} requests, " in out and "0 repairs, 0 safe-stop fallbacks" in out
    assert " 0 requests, " in out2
    logs = sorted((project / ".cadenza-env").glob("*.log.jsonl"))
    a, b = read_log(logs[0]), read_log(logs[1])
    assert a.header["policy"] == "llm"
    assert sum(e["success"] for e in a.of_type("episode_end")) >= 1
    assert [s["action_text"] for s in a.steps] == [s["action_text"] for s in b.steps]
    assert all(s["planner"]["requests"] == 1 and not s["planner"]["fallback"] for s in a.steps)
    totals = a.records[-1]["planner"]
    assert totals["client"]["requests"] == first and totals["decisions"] == len(a.steps)
    assert totals["client"]["requests"] + totals["client"]["cache_hits"] == len(a.steps)  # repeated prompts: cached
    assert b.records[-1]["planner"]["client"]["cache_hits"] == len(b.steps)
    assert srv.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert files_holding(project, KEY.encode()) == [] and KEY not in out + err


def test_env_run_policy_llm_401_is_one_line(project: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with chat_server([Reply(status=401, error=f"bad key {KEY}")]) as srv:
        code, out, err = run_cli(["env", "run", project, "--headless", "--policy", "llm", *llm_flags(srv.url)],
                                 capsys, monkeypatch)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "HTTP 401" in err and ENV in err
    assert KEY not in out + err and files_holding(project, KEY.encode()) == []


def test_env_run_policy_llm_without_a_key_is_refused(project: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV)
    with chat_server() as srv:
        code, _, err = run_cli(["env", "run", project, "--headless", "--policy", "llm", *llm_flags(srv.url)],
                               capsys, monkeypatch)
    assert code == 2 and ENV in err and srv.requests == []


def test_budget_too_small_is_refused_before_any_request(project: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(["env", "run", project, "--headless", "--episodes", "2", "--perturb", "1.0"], capsys,
                   monkeypatch)[0] == 0
    with chat_server(model=rescue_model) as srv:
        code, _, err = run_cli(["env", "train", project, "--policy", "llm", "--budget", "10", *llm_flags(srv.url)],
                               capsys, monkeypatch)
    assert code == 2 and "--budget 10" in err and "LLM requests" in err and srv.requests == []


@pytest.mark.slow
def test_env_train_with_the_llm_judge_and_the_key_is_never_written(project: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(["env", "run", project, "--headless", "--episodes", "8", "--perturb", "1.0"], capsys,
                   monkeypatch)[0] == 0
    incumbent = (project / "SYSTEM_PROMPT.md").read_text()
    candidate = with_rules(incumbent, [Rule("max_leg_m", 1.0, "step-after-walk_forward, 1 of 8 missions")])
    outputs = []
    with chat_server(model=judge_or_plan(candidate)) as srv:
        code, out, err = run_cli(["env", "train", project, "--policy", "scripted", "--screen", "8", "--validation",
                                  "10", *llm_flags(srv.url)], capsys, monkeypatch)
        outputs.append(out + err)
        assert code in (0, 3, 4), err
        assert len(srv.requests) == 1  # the judge; the scripted planner flies the missions
        assert "improve the system prompt" in srv.requests[0]["body"]["messages"][0]["content"]
        # the run --policy llm path too, so its log, cache and output are scanned as well
        code, out, err = run_cli(["env", "run", project, "--headless", "--policy", "llm", "--episodes", "2",
                                  *llm_flags(srv.url)], capsys, monkeypatch)
        outputs.append(out + err)
        assert code == 0
    assert "llm judge rule-model" in outputs[0]
    reg = Registry(project)
    if reg.versions("prompt"):
        meta = reg.manifest("prompt", reg.latest("prompt"))["metadata"]
        assert meta["source"] == "llm" and meta["judge"] == "llm judge rule-model"
        assert read_settings(reg.path("prompt", reg.latest("prompt"), "SYSTEM_PROMPT.md").read_text()) == \
            {"max_leg_m": 1.0}
    assert list((project / ".cadenza" / "llm-cache").rglob("*.json"))  # the replies were cached ...
    assert files_holding(project, KEY.encode()) == []  # ... and no file under the project holds the key
    assert all(KEY not in o for o in outputs)


def test_a_judge_rewrite_that_breaks_an_invariant_is_dropped(project: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(["env", "run", project, "--headless", "--episodes", "3", "--perturb", "1.0"], capsys,
                   monkeypatch)[0] == 0
    original = (project / "SYSTEM_PROMPT.md").read_bytes()
    bad = original.decode().replace("`climb_step`", "a climb") + "\n## Rules\n\n- Go fast.\n"
    with chat_server(model=judge_or_plan(bad)) as srv:
        code, out, err = run_cli(["env", "train", project, "--policy", "scripted", *llm_flags(srv.url)], capsys,
                                 monkeypatch)
    assert "nothing to fix" not in out  # seeds 0-2 at perturbation 1.0 have failures (deterministic)
    assert len(srv.requests) == 1
    assert code == 0, err
    assert "dropped candidate" in out and "drops action(s) from the vocabulary: climb_step" in out
    assert (project / "SYSTEM_PROMPT.md").read_bytes() == original and Registry(project).versions("prompt") == []


@pytest.mark.slow
def test_a_better_prompt_is_deployed_and_rollback_restores_the_original_bytes(
        project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A prompt whose rule cripples the planner (0.3 m walks: missions run out of their 15 steps); the judge's
    rewrite drops the rule; validation deploys it; history shows both; rollback restores the exact bytes."""
    cfg = project / "cadenza.toml"
    cfg.write_text(cfg.read_text().replace("max_steps = 40", "max_steps = 15"))
    original = (project / "SYSTEM_PROMPT.md").read_text().replace("\n", "\r\n") + "\r\n## Rules\r\n\r\n" \
        "- Walk at most 0.3 m per step; square up in between. `max_leg_m = 0.3` (fixes nothing)  \r\n"
    (project / "SYSTEM_PROMPT.md").write_bytes(original.encode())
    assert read_settings(original) == {"max_leg_m": 0.3}
    assert run_cli(["env", "run", project, "--headless", "--episodes", "4", "--goal", "search for the victim"],
                   capsys, monkeypatch)[0] == 0
    better = (EXAMPLE / "SYSTEM_PROMPT.md").read_text()
    args = ["env", "train", project, "--policy", "scripted", "--screen", "4", "--validation", "12", "--perturb", "0",
            *llm_flags("http://127.0.0.1:9/v1")]
    with chat_server(model=judge_or_plan(better)) as srv:
        args[-9] = srv.url
        code, out, err = run_cli(args, capsys, monkeypatch)
        assert code == 0, out + err
        assert "DEPLOY: promoted v0002" in out.replace("\n", " ")
        assert (project / "SYSTEM_PROMPT.md").read_text() == better
        code, out, _ = run_cli(args, capsys, monkeypatch)  # the same runs again: nothing new to fix
        assert code == 0 and "nothing new to fix" in out.replace("\n", " ") and len(srv.requests) == 1
    code, out, _ = run_cli(["env", "history", project, "--kind", "prompt"], capsys, monkeypatch)
    assert code == 0 and "v0001" in out and "v0002" in out and "DEPLOY" in out
    code, _, _ = run_cli(["env", "rollback", project, "prompt"], capsys, monkeypatch)
    assert code == 0 and (project / "SYSTEM_PROMPT.md").read_bytes() == original.encode()
