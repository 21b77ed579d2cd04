"""The mission world, skills, vocabulary and the scripted planner's building blocks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cadenza.base import load_base
from cadenza.mission.actions import ActionError, ActionStep, Vocabulary
from cadenza.mission.body import ProxyBody
from cadenza.mission.controller import LowLevelController
from cadenza.mission.skills import execute
from cadenza.mission.world import (
    REACH_M,
    ROBOT_R,
    STATE_NAMES,
    BodyState,
    Site,
    collision_kind,
    observe,
    state_vector,
    summary_text,
)
from cadenza.tasks.proxy.rescue_dog import NUM_OBSTACLES

VOCAB = Vocabulary({
    "walk_forward": {"distance_m": (0.1, 3.0)},
    "crawl_forward": {"distance_m": (0.1, 2.0)},
    "turn_left": {"degrees": (5.0, 180.0)},
    "turn_right": {"degrees": (5.0, 180.0)},
    "climb_step": {},
    "sit": {},
    "stand": {},
})


def test_site_is_deterministic_per_seed_and_well_formed() -> None:
    a, b, c = Site.generate(3), Site.generate(3), Site.generate(4)
    assert a.as_dict() == b.as_dict()
    assert a.as_dict() != c.as_dict()
    for seed in range(200):
        s = Site.generate(seed)
        assert s.rocks.shape == (NUM_OBSTACLES, 3)
        assert s.debris_x1 > s.debris_x0 > 1.0 and s.step_x > 1.0
        assert not (s.debris_x0 - ROBOT_R <= s.step_x <= s.debris_x1 + ROBOT_R)  # the features do not overlap
        last = max(s.debris_x1, s.step_x)
        assert s.victim[0] > last + 1.0 and abs(s.victim[1]) >= 0.8  # beyond the features, off to one side
        assert Site.from_dict(s.as_dict()).as_dict() == s.as_dict()
        # no rock in the debris field, on the step face or at the start
        for x, y, r in s.rocks:
            assert x - r > s.debris_x1 or x + r < s.debris_x0
            assert abs(x - s.step_x) > r + ROBOT_R
            assert math.hypot(x, y) > 1.0


def test_collision_rules_follow_the_zones() -> None:
    s = Site.generate(0)
    mid_debris = (s.debris_x0 + s.debris_x1) / 2
    free_y = 5.0  # far from every rock
    ledge = mid_debris > s.step_x  # the debris field lies on the ledge when the step comes first
    assert collision_kind(s, BodyState(mid_debris, free_y, 0.0, "standing", ledge), False) == "debris"
    assert collision_kind(s, BodyState(mid_debris, free_y, 0.0, "crawling", ledge), False) is None
    assert collision_kind(s, BodyState(s.step_x - ROBOT_R + 0.01, free_y, 0.0), False) == "step"
    assert collision_kind(s, BodyState(s.step_x - ROBOT_R + 0.01, free_y, 0.0), True) is None  # while climbing
    assert collision_kind(s, BodyState(s.step_x + ROBOT_R + 0.01, free_y, 0.0, on_ledge=True), False) is None
    assert collision_kind(s, BodyState(s.step_x + ROBOT_R - 0.01, free_y, 0.0, on_ledge=True), False) == "ledge"
    rx, ry, rr = s.rocks[0]
    assert collision_kind(s, BodyState(rx, ry + rr + ROBOT_R - 0.01, 0.0, "crawling", rx > s.step_x), True) == "rock"


def test_observation_summary_text_and_state_vector() -> None:
    s = Site.generate(1)
    obs = observe(s, BodyState(0.0, 0.0, s.start_yaw))
    assert obs["debris"]["state"] == "ahead" and obs["step"]["state"] == "ahead"
    assert obs["debris"]["edge_m"] == pytest.approx(s.debris_x0 - ROBOT_R, abs=0.01)
    assert obs["victim"]["distance_m"] == pytest.approx(math.hypot(*s.victim), abs=0.01)
    assert obs["debris"]["normal_deg"] == round(-math.degrees(s.start_yaw))
    text = summary_text(obs)
    assert "victim" in text and "debris field" in text and "step" in text
    vec = state_vector(obs)
    assert len(vec) == len(STATE_NAMES) and all(math.isfinite(v) for v in vec)
    inside = observe(s, BodyState((s.debris_x0 + s.debris_x1) / 2, 9.0, 0.0, "crawling"))
    assert inside["debris"]["state"] == "inside" and "exit_m" in inside["debris"]


def test_vocabulary_checks_clamps_and_parses() -> None:
    c = VOCAB.check(ActionStep("walk_forward", {"distance_m": 9.0}))
    assert c.step.params == {"distance_m": 3.0} and c.clamped == {"distance_m": 9.0}
    with pytest.raises(ActionError, match="unknown action 'jump'; available: walk_forward"):
        VOCAB.check(ActionStep("jump"))
    with pytest.raises(ActionError, match="missing parameter degrees"):
        VOCAB.check(ActionStep("turn_left"))
    with pytest.raises(ActionError, match="unknown parameter"):
        VOCAB.check(ActionStep("sit", {"seconds": 1}))
    with pytest.raises(ActionError, match="must be a number"):
        VOCAB.check(ActionStep("walk_forward", {"distance_m": "far"}))
    assert VOCAB.parse("walk_forward 1.5").params == {"distance_m": "1.5"}
    assert VOCAB.parse("`turn_left degrees=30`").params == {"degrees": "30"}
    seq = VOCAB.parse_sequence("walk_forward 1.0, crawl_forward 0.5; climb_step sit")
    assert [s.name for s in seq] == ["walk_forward", "crawl_forward", "climb_step", "sit"]
    assert ActionStep("crawl_forward", {"distance_m": 0.5}).text() == "crawl_forward 0.5"
    assert Vocabulary.from_dict(VOCAB.as_dict()).actions == VOCAB.actions


def _fresh(seed: int, level: float = 0.0) -> tuple[Site, ProxyBody, BodyState, LowLevelController]:
    site = Site.generate(seed)
    body = ProxyBody(level, seed, site.rocks, 0.0)
    controller = LowLevelController("base", load_base("builtin:rescue-dog", None, 3))
    return site, body, BodyState(body.x, body.y, body.yaw), controller


def test_skills_move_the_proxy_body_as_asked() -> None:
    site, body, state, ctrl = _fresh(2)
    out = execute(ActionStep("walk_forward", {"distance_m": 1.0}), site, state, body, ctrl)
    assert out.collision is None and out.note is None
    assert state.x == pytest.approx(1.0, abs=0.2) and abs(state.y) < 0.1
    assert out.trace[0] == [0.0, 0.0] and len(out.trace) > 3
    out = execute(ActionStep("turn_left", {"degrees": 60.0}), site, state, body, ctrl)
    assert math.degrees(state.yaw) == pytest.approx(60.0, abs=8.0)
    # turns on the spot
    assert math.hypot(out.trace[-1][0] - out.trace[0][0], out.trace[-1][1] - out.trace[0][1]) < 0.25
    before = (state.x, state.y)
    out = execute(ActionStep("climb_step"), site, state, body, ctrl)
    assert out.ticks == 0 and "no step within reach" in out.note and (state.x, state.y) == before


def test_crawl_is_slower_than_walk_and_passes_the_debris() -> None:
    site, body, state, ctrl = _fresh(5)
    def top_speed(trace: list[list[float]]) -> float:  # trace points are 0.1 s apart
        return max(math.dist(a, b) for a, b in itertools.pairwise(trace)) / 0.1

    s1, b1, st1, _ = _fresh(5)
    walk = execute(ActionStep("walk_forward", {"distance_m": 1.5}), s1, st1, b1, ctrl)
    s2, b2, st2, _ = _fresh(5)
    crawl = execute(ActionStep("crawl_forward", {"distance_m": 1.5}), s2, st2, b2, ctrl)
    assert walk.collision is None and crawl.collision is None
    assert st1.x == pytest.approx(1.5, abs=0.15) and st2.x == pytest.approx(1.5, abs=0.15)
    assert top_speed(crawl.trace) < 0.6 < 0.8 < top_speed(walk.trace)
    assert crawl.ticks > walk.ticks
    # crawl straight through the debris field from just before it: no collision, posture crawling
    start = site.debris_x0 - ROBOT_R - 0.2
    body.env.pos[0] = [start, 9.0]  # far from the rocks
    state.x, state.y, state.on_ledge = start, 9.0, bool(start > site.step_x)
    d = site.debris_x1 - site.debris_x0 + 2 * ROBOT_R + 0.4
    out = execute(ActionStep("crawl_forward", {"distance_m": min(d, 2.0)}), site, state, body, ctrl)
    assert out.collision is None and state.posture == "crawling"
    # standing up inside it is a collision
    body.env.pos[0] = [(site.debris_x0 + site.debris_x1) / 2, 9.0]
    state.x, state.on_ledge = float(body.env.pos[0, 0]), bool(body.env.pos[0, 0] > site.step_x)
    out = execute(ActionStep("stand"), site, state, body, ctrl)
    assert out.collision == "debris" and out.ticks == 1


def test_reaching_the_victim_ends_the_step() -> None:
    site, body, state, ctrl = _fresh(7)
    vx, vy = site.victim
    body.env.pos[0] = [vx - REACH_M - 0.3, vy]
    state.x, state.y, state.on_ledge = vx - REACH_M - 0.3, vy, True
    out = execute(ActionStep("walk_forward", {"distance_m": 1.0}), site, state, body, ctrl)
    assert out.reached and out.collision is None and out.progress_m > 0.2


def test_sitting_ends_the_mission_and_counts_only_beside_the_victim() -> None:
    site, body, state, ctrl = _fresh(7)
    vx, vy = site.victim
    body.env.pos[0] = [vx - 0.9, vy]
    state.x, state.y, state.on_ledge = vx - 0.9, vy, True
    out = execute(ActionStep("sit"), site, state, body, ctrl)
    assert out.ends_mission and out.reached and state.posture == "sitting" and out.ticks == 25
    site, body, state, ctrl = _fresh(7)
    out = execute(ActionStep("sit"), site, state, body, ctrl)
    assert out.ends_mission and not out.reached and "from the victim" in out.note


def test_body_uses_the_proxy_observation_with_the_carrot_as_goal() -> None:
    site = Site.generate(0)
    body = ProxyBody(0.0, 0, site.rocks, 0.0)
    body.set_carrot(2.0, 0.0)
    obs = body.observe()
    assert obs.shape == (1, 18)
    assert obs[0, 0] == pytest.approx(0.4) and obs[0, 1] == pytest.approx(0.0) and obs[0, 2] == pytest.approx(0.4)
    near = site.rocks[np.argsort(np.hypot(site.rocks[:, 0], site.rocks[:, 1]))[0]]
    assert np.isclose(np.hypot(obs[0, 6], obs[0, 7]), np.hypot(near[0], near[1]), atol=1e-4) or obs[0, 8] > 0


def test_a_climb_ends_with_the_body_well_onto_the_ledge() -> None:
    from cadenza.mission.skills import CLIMB_ONTO_M

    seed = next(s for s in range(50) if Site.generate(s).step_x < Site.generate(s).debris_x0)  # the step first
    site, body, state, ctrl = _fresh(seed)
    walk = site.step_x - ROBOT_R - 0.3  # stand off 0.3 m from the face, square to it
    execute(ActionStep("walk_forward", {"distance_m": walk}), site, state, body, ctrl)
    out = execute(ActionStep("climb_step"), site, state, body, ctrl)
    assert out.collision is None and state.on_ledge
    assert state.x - ROBOT_R >= site.step_x + CLIMB_ONTO_M  # room to brake and turn before the drop
    out = execute(ActionStep("turn_left", {"degrees": 90.0}), site, state, body, ctrl)
    assert out.collision is None and state.on_ledge
