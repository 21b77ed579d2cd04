"""The LLM client against a real chat-completions server on 127.0.0.1: retries, errors, cache, budget, planner."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")

from cadenza.llm.cache import ReplyCache
from cadenza.llm.client import (
    ChatClient,
    LlmAuthError,
    LlmBudgetError,
    LlmReplyError,
    LlmTimeoutError,
)
from cadenza.llm.planner import LlmPlanner
from cadenza.llm.settings import LlmSettings, MissingKeyError
from cadenza.mission.actions import Vocabulary
from cadenza.mission.objectives import PlannerStop
from cadenza.mission.planners import PlannerInput
from cadenza.mission.runner import DEFAULT_ACTIONS
from tests.chat_server import Reply, chat_server

KEY = "gsk_test_SECRET_0123456789abcdef"
ENV = "CADENZA_TEST_KEY"
MSG = [{"role": "user", "content": "hello"}]
OK = Reply('{"answer": 42}')


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, KEY)


def settings(url: str, **kw: object) -> LlmSettings:
    base = {"base_url": url, "model": "test-model", "api_key_env": ENV, "timeout_s": 5.0, "max_retries": 2}
    return LlmSettings(**{**base, **kw})  # type: ignore[arg-type]


def test_429_with_retry_after_is_retried_after_the_wait() -> None:
    with chat_server([Reply(status=429, headers={"retry-after": "0.3"}), OK]) as srv:
        client = ChatClient(settings(srv.url))
        t0 = time.monotonic()
        assert client.complete_json(MSG) == {"answer": 42}
        waited = time.monotonic() - t0
    assert len(srv.requests) == 2
    assert waited >= 0.3  # the SDK honoured retry-after
    first = srv.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["authorization"] == f"Bearer {KEY}"
    assert first["body"]["model"] == "test-model" and first["body"]["messages"] == MSG
    assert first["body"]["response_format"] == {"type": "json_object"}


def test_500_is_retried_then_succeeds() -> None:
    with chat_server([Reply(status=500), OK]) as srv:
        assert ChatClient(settings(srv.url)).complete_json(MSG) == {"answer": 42}
    assert len(srv.requests) == 2


def test_500_every_time_is_one_line_after_the_retries() -> None:
    script = [Reply(status=503, headers={"retry-after-ms": "10"}, error="overloaded")] * 3
    with chat_server(script) as srv, pytest.raises(Exception) as err:
        ChatClient(settings(srv.url, max_retries=2)).complete(MSG)
    assert len(srv.requests) == 3
    msg = str(err.value)
    assert "\n" not in msg and "HTTP 503" in msg and "after 2 retries" in msg and "overloaded" in msg


def test_malformed_json_reply_is_a_clear_error() -> None:
    with chat_server([Reply('{"action": "walk_forward", ')]) as srv, \
            pytest.raises(LlmReplyError, match="not JSON") as err:
        ChatClient(settings(srv.url)).complete_json(MSG)
    assert "\n" not in str(err.value)


def test_401_is_not_retried_and_names_the_variable_not_the_key() -> None:
    with chat_server([Reply(status=401, error=f"Invalid API Key {KEY}")]) as srv, \
            pytest.raises(LlmAuthError) as err:
        ChatClient(settings(srv.url)).complete(MSG)
    assert len(srv.requests) == 1
    msg = str(err.value)
    assert "HTTP 401" in msg and ENV in msg and KEY not in msg and "\n" not in msg


def test_403_is_an_auth_error() -> None:
    with chat_server([Reply(status=403)]) as srv, pytest.raises(LlmAuthError, match="HTTP 403"):
        ChatClient(settings(srv.url)).complete(MSG)


def test_a_reply_slower_than_the_timeout_fails_after_the_retries() -> None:
    with chat_server([Reply('{"late": true}', delay_s=1.5)] * 2) as srv:
        client = ChatClient(settings(srv.url, timeout_s=0.3, max_retries=1))
        t0 = time.monotonic()
        with pytest.raises(LlmTimeoutError) as err:
            client.complete(MSG)
        took = time.monotonic() - t0
    assert len(srv.requests) == 2  # the first try and one retry
    assert took < 3.0
    msg = str(err.value)
    assert "within 0.3 s" in msg and "after 1 retry" in msg and "\n" not in msg


def test_missing_key_is_refused_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV)
    with chat_server() as srv, pytest.raises(MissingKeyError, match=ENV):
        ChatClient(settings(srv.url))
    assert srv.requests == []


def test_replies_are_cached_by_endpoint_model_messages_and_sampling(tmp_path: Path) -> None:
    cache = ReplyCache(tmp_path / "cache")
    with chat_server(model=lambda m: json.dumps({"n": len(m)})) as srv:
        a = ChatClient(settings(srv.url), cache)
        assert a.complete_json(MSG) == {"n": 1}
        assert ChatClient(settings(srv.url), cache).complete_json(MSG) == {"n": 1}  # a re-run: from disk
        assert len(srv.requests) == 1
        ChatClient(settings(srv.url, temperature=0.5), cache).complete(MSG)  # other sampling: a new request
        ChatClient(settings(srv.url, model="other"), cache).complete(MSG)  # other model: a new request
        ChatClient(settings(srv.url)).complete(MSG)  # --no-cache: always asks
        assert len(srv.requests) == 4
        with chat_server(model=lambda m: json.dumps({"other": True})) as srv2:  # same model name, other server
            assert ChatClient(settings(srv2.url), cache).complete_json(MSG) == {"other": True}
            assert len(srv2.requests) == 1
        assert ChatClient(settings(srv.url + "/"), cache).complete_json(MSG) == {"n": 1}  # a trailing slash: same
        assert len(srv.requests) == 4
    assert a.counts.as_dict() == {"requests": 1, "cache_hits": 0, "failures": 0}
    entries = list((tmp_path / "cache").rglob("*.json"))
    assert len(entries) == 4
    assert all(KEY not in p.read_text() for p in entries)


def test_cached_replies_work_offline(tmp_path: Path) -> None:
    cache = ReplyCache(tmp_path / "cache")
    with chat_server([OK]) as srv:
        url = srv.url
        ChatClient(settings(url), cache).complete(MSG)
    # the server is gone: the same request is answered from the cache
    assert ChatClient(settings(url, max_retries=0), cache).complete_json(MSG) == {"answer": 42}


def test_budget_stops_requests_but_not_cache_hits(tmp_path: Path) -> None:
    cache = ReplyCache(tmp_path / "cache")
    with chat_server(model=lambda m: "{}") as srv:
        c = ChatClient(settings(srv.url), cache, budget=1)
        c.complete(MSG)
        c.complete(MSG)  # cached: free
        with pytest.raises(LlmBudgetError, match="budget"):
            c.complete([{"role": "user", "content": "other"}])
    assert len(srv.requests) == 1


# ---------------------------------------------------------------------------------------------- the planner
def planner_input(vocab: Vocabulary) -> PlannerInput:
    obs = {"posture": "standing"}
    return PlannerInput("search", "SYSTEM\n\nGoal: search\nObservation: standing\nNext action:", obs, "standing",
                        vocab, (), 1)


def test_planner_valid_reply() -> None:
    vocab = Vocabulary.from_config(DEFAULT_ACTIONS)
    with chat_server([Reply('{"action": "walk_forward", "params": {"distance_m": 1.5}}')]) as srv:
        p = LlmPlanner(vocab, ChatClient(settings(srv.url)))
        step = p.plan(planner_input(vocab))
    assert (step.name, step.params) == ("walk_forward", {"distance_m": 1.5})
    assert srv.requests[0]["body"]["messages"][1]["content"].startswith("SYSTEM")
    assert "walk_forward distance_m=[0.1, 3]" in srv.requests[0]["body"]["messages"][0]["content"]
    assert p.step_record() == {"requests": 1, "cached": 0, "repair": False, "fallback": False, "errors": []}


def test_planner_repairs_an_invalid_step_once_quoting_the_error() -> None:
    vocab = Vocabulary.from_config(DEFAULT_ACTIONS)
    script = [Reply('{"action": "fly", "params": {}}'), Reply('{"action": "turn_left", "params": {"degrees": 30}}')]
    with chat_server(script) as srv:
        p = LlmPlanner(vocab, ChatClient(settings(srv.url)))
        step = p.plan(planner_input(vocab))
    assert (step.name, step.params) == ("turn_left", {"degrees": 30.0})
    repair = srv.requests[1]["body"]["messages"]
    assert repair[2] == {"role": "assistant", "content": '{"action": "fly", "params": {}}'}
    assert "unknown action 'fly'" in repair[3]["content"]
    assert p.counts.as_dict() == {"decisions": 1, "requests": 2, "repairs": 1, "fallbacks": 0, "invalid_replies": 1}


def test_planner_stops_safely_after_a_failed_repair() -> None:
    vocab = Vocabulary.from_config(DEFAULT_ACTIONS)
    script = [Reply("walk forward please"), Reply('{"action": "walk_forward", "params": {}}')]
    with chat_server(script) as srv:
        p = LlmPlanner(vocab, ChatClient(settings(srv.url)))
        with pytest.raises(PlannerStop, match=r"invalid after one repair .*missing parameter distance_m"):
            p.plan(planner_input(vocab))
    assert "not JSON" in srv.requests[1]["body"]["messages"][3]["content"]
    rec = p.step_record()
    assert rec["repair"] and rec["fallback"] and "missing parameter distance_m" in rec["errors"][1]
    assert p.counts.fallbacks == 1 and p.counts.invalid_replies == 2 and len(srv.requests) == 2
