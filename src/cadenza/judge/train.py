"""``cadenza env train``: rewrite SYSTEM_PROMPT.md from the runs, accepted only when missions improve.

1. Read the cached runs (:mod:`cadenza.judge.runs`) and mine them (:mod:`cadenza.judge.mine`).
2. The incumbent is SYSTEM_PROMPT.md; the first time, it is registered as version 1 of kind ``prompt``
   and made the baseline, so a rollback can always restore its bytes.
3. A judge proposes candidates: the local judge (offline, deterministic: rules from the failure modes,
   :mod:`cadenza.judge.propose`), or the LLM judge (:mod:`cadenza.judge.llm_judge`). Every candidate is
   checked against the invariants (:mod:`cadenza.judge.invariants`); one that breaks any is dropped.
4. **Screen**: the incumbent and every candidate fly the same minibatch of the missions the judge read
   (their seeds and goals; spread evenly over them, so failures and successes keep their share). A
   candidate goes on only if it succeeds on more of them than the incumbent; the best is merged with
   the best that sets other parameters into one more candidate (when the merge keeps the invariants),
   and the best of all goes on.
5. **Validate**: incumbent and candidate fly the same ``validation`` missions on fixed seeds that no
   run log holds (:data:`VALIDATION_SEED`, outside ``env run``'s seed range), and the paired
   difference in success gets an interval (:func:`cadenza.governance.stats.paired_diff_interval`).
   Lower bound above zero: DEPLOY (registered, promoted: SYSTEM_PROMPT.md rewritten). Upper bound
   below zero: BLOCK (registered, never promoted; the incumbent's bytes stay). Otherwise, a tie or not
   enough evidence: NEEDS_DATA, the incumbent stays.

The judge never grades its candidate: only mission outcomes do. Evaluation logs go to a temporary
directory, never to ``.cadenza-env`` (so the next ``env train`` never learns from its own validation).
With the LLM planner evaluating (``--policy llm``), the number of requests is estimated first and a
budget that cannot hold one candidate's evaluation is refused before any request.
"""

from __future__ import annotations

import difflib
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cadenza.errors import CadenzaError, UsageError
from cadenza.governance.registry import Registry, open_registry
from cadenza.governance.stats import paired_diff_interval, paired_table, wilson
from cadenza.judge.invariants import check_candidate
from cadenza.judge.mine import FailureMode, MiningReport, mine
from cadenza.judge.propose import Candidate, merge, offline_candidates, unanswered
from cadenza.judge.runs import MissionView, RunSet, load_runs
from cadenza.mission.controller import LowLevelController, load_controller
from cadenza.mission.planners import Planner
from cadenza.mission.planners import make_planner as registered_planner
from cadenza.mission.rules import RULE_PARAMS
from cadenza.mission.runner import RunOptions, mission_vocabulary, run_missions
from cadenza.project.config import PROMPT_NAME, Project

VALIDATION_SEED = 2_000_000  # validation missions: seeds 2,000,000 + i (env run's seeds stay below 1,000,000)
KIND = "prompt"


@dataclass(frozen=True)
class TrainOptions:
    runs: int | None = None  # read the newest N run logs (None: all)
    offline: bool = True  # the local judge (no key needed)
    policy: str | None = None  # the planner that flies the evaluation missions (None: the one most runs used)
    screen: int = 50  # screening minibatch size (missions the judge read)
    validation: int = 100  # validation missions (fixed seeds the judge never read)
    perturb: float | None = None  # evaluation perturbation (None: the runs' most common level)
    budget: int | None = None  # most LLM requests (None: no limit)
    dry_run: bool = False


@dataclass
class Score:
    """One prompt on one set of missions."""

    outcomes: list[bool]
    collisions: int

    @property
    def k(self) -> int:
        return sum(self.outcomes)

    @property
    def n(self) -> int:
        return len(self.outcomes)

    def as_dict(self, confidence: float = 0.95) -> dict[str, Any]:
        lo, hi = wilson(self.k, self.n, confidence)
        return {"missions": self.n, "successes": self.k, "success_rate": round(self.k / max(self.n, 1), 4),
                "ci": [round(lo, 4), round(hi, 4)], "collisions": self.collisions}


@dataclass
class TrainResult:
    verdict: str  # DEPLOY | BLOCK | NEEDS_DATA | KEPT (nothing to fix, or no candidate passed screening)
    action: str  # one line: what was done
    label: str  # "offline" or the LLM judge's model
    runs: RunSet
    report: MiningReport
    candidates: list[Candidate]
    dropped: list[Candidate] = field(default_factory=list)  # broke an invariant
    screen: dict[str, Score] = field(default_factory=dict)  # label -> score on the minibatch ("incumbent" too)
    chosen: Candidate | None = None
    validation: dict[str, Score] = field(default_factory=dict)  # "incumbent", "candidate"
    paired: tuple[float, float] | None = None  # interval of candidate minus incumbent
    perturb: float = 0.0
    policy: str = "scripted"
    incumbent_version: str | None = None
    candidate_version: str | None = None
    unanswered: list[tuple[FailureMode, str]] = field(default_factory=list)
    diff: str = ""
    llm_requests: int = 0


def evaluation_cost(opts: TrainOptions, n_candidates: int, steps_per_mission: float) -> int:
    """LLM requests one train needs when the llm planner flies the missions (an estimate, no repairs)."""
    if opts.policy != "llm":
        return 0
    missions = opts.screen * (n_candidates + 1) + 2 * opts.validation
    return math.ceil(missions * steps_per_mission)


def minibatch(runs: RunSet, size: int) -> list[MissionView]:
    """The screening missions: up to ``size`` of the judge's missions (one per seed), spread evenly over them,
    so failures and successes keep their share: a rule that fixes failures by breaking successes shows."""
    by_seed: dict[int, MissionView] = {}
    for m in runs.missions:
        by_seed.setdefault(m.seed, m)
    unique = list(by_seed.values())
    if len(unique) <= size:
        return unique
    return [unique[(i * len(unique)) // size] for i in range(size)]


def _common_policy(runs: RunSet) -> str:
    llm = sum(m.policy == "llm" for m in runs.missions)
    return "llm" if 2 * llm > len(runs.missions) else "scripted"


def _common_perturb(runs: RunSet) -> float:
    levels: dict[float, int] = {}
    for m in runs.missions:
        levels[m.perturb] = levels.get(m.perturb, 0) + 1
    return max(levels.items(), key=lambda kv: (kv[1], kv[0]))[0]


class Evaluator:
    """Flies missions under a given prompt text (logs in a temporary directory)."""

    def __init__(self, project: Project, make_planner: Callable[[], Planner], perturb: float) -> None:
        self.project, self.make_planner, self.perturb = project, make_planner, perturb
        self.controller: LowLevelController = load_controller(project, "residual")
        self.tmp = tempfile.TemporaryDirectory(prefix="cadenza-prompt-eval-")

    def fly(self, prompt: str, missions: list[tuple[int, str | None]]) -> Score:
        """``missions``: (seed, goal) pairs; a goal of ``None`` takes the project's goals in turn."""
        outcomes, collisions = [], 0
        planner = self.make_planner()
        # consecutive seeds with the project's goals: one run; anything else: one run per mission
        if all(g is None for _, g in missions) and [s for s, _ in missions] == list(
                range(missions[0][0], missions[0][0] + len(missions))):
            batches = [(missions[0][0], len(missions), None)]
        else:
            batches = [(s, 1, g) for s, g in missions]
        for seed, n, goal in batches:
            res = run_missions(self.project, RunOptions(goal=goal, episodes=n, seed=seed, perturb=self.perturb),
                               planner=planner, controller=self.controller, system_prompt=prompt,
                               log_dir=Path(self.tmp.name))
            outcomes += [e.success for e in res.episodes]
            collisions += sum(e.collision is not None for e in res.episodes)
            res.log_path.unlink(missing_ok=True)
        return Score(outcomes, collisions)

    def close(self) -> None:
        self.tmp.cleanup()


def read_prompt_bytes(project: Project) -> bytes:
    """SYSTEM_PROMPT.md's exact bytes (empty when absent); text that is not UTF-8 is one line."""
    p = project.prompt_path
    raw = p.read_bytes() if p.is_file() else b""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CadenzaError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return raw


def already_judged(reg: Registry, incumbent: str, logs: dict[str, str]) -> str | None:
    """A prompt version already made from (at least) these logs against this incumbent, or ``None``."""
    base = reg.baseline(KIND)
    if base is None or reg.path(KIND, base, PROMPT_NAME).read_bytes() != incumbent.encode("utf-8"):
        return None
    hashes = set(logs.values())
    for e in reversed(reg.ledger(KIND)):
        meta = e.get("metadata") or {}
        if e.get("event") == "register" and (e.get("version") == base or meta.get("parent") == base) \
                and hashes <= set((meta.get("logs") or {}).values()):
            return str(e["version"])
    return None


def ensure_incumbent(reg: Registry, text: bytes) -> str:
    """The registered version holding ``text`` as the baseline (registering and promoting it if needed)."""
    base = reg.baseline(KIND)
    if base is not None and reg.path(KIND, base, PROMPT_NAME).read_bytes() == text:
        return base
    origin = "SYSTEM_PROMPT.md before env train" if base is None else "edited by hand after " + base
    v = reg.register(KIND, {PROMPT_NAME: text}, {"origin": origin, "judge": None})
    reg.promote(KIND, v, [f"incumbent: {origin}"])
    return v


def train_prompt(project: Project, opts: TrainOptions, *, judge: Callable[[MiningReport, str], Candidate] | None = None,
                 make_planner: Callable[[], Planner] | None = None, label: str = "offline",
                 requests: Callable[[], int] | None = None,
                 progress: Callable[[str], None] | None = None) -> TrainResult:
    """One round of prompt training (see the module docstring).

    ``judge`` is the LLM judge (``None``: the local judge); ``make_planner`` builds the planner that flies
    the evaluation missions (``None``: the scripted planner); ``requests`` counts the LLM requests made.
    """
    say = progress or (lambda s: None)
    vocab, _ = mission_vocabulary(project)
    runs = load_runs(project, opts.runs)
    report = mine(runs)
    perturb = _common_perturb(runs) if opts.perturb is None else opts.perturb
    policy = opts.policy or _common_policy(runs)
    if policy == "llm" and make_planner is None:
        raise UsageError("--policy llm: the llm planner needs an endpoint and a key (drop --offline, set the key), "
                         "or use --policy scripted")
    opts = replace(opts, policy=policy)
    incumbent = read_prompt_bytes(project).decode("utf-8")  # newlines as they are: rollback restores these bytes
    result = TrainResult("KEPT", "", label, runs, report, [], perturb=perturb, policy=policy,
                         unanswered=unanswered(report))
    say(f"read {len(runs.missions)} missions from {len(runs.logs)} log(s) ({runs.bad_lines} bad line(s) skipped); "
        f"{report.failures} failed, {len(report.modes)} failure mode(s)")
    if report.failures == 0:
        result.action = "nothing to fix: every mission read succeeded; the incumbent stays"
        return result
    judged = already_judged(open_registry(project), incumbent, runs.logs)
    if judged is not None:
        result.action = (f"nothing new to fix: {judged} was already judged on these {len(runs.logs)} log(s) against "
                         f"this prompt; the incumbent stays (run more missions with `env run` first)")
        return result
    # the budget: refused before any request when it cannot hold one candidate's evaluation
    steps = sum(len(m.steps) for m in runs.missions) / len(runs.missions)
    need = evaluation_cost(opts, 1, steps) + (0 if judge is None else 1)
    if opts.budget is not None and need > opts.budget:
        raise UsageError(f"--budget {opts.budget}: evaluating one candidate needs about {need} LLM requests "
                         f"({opts.screen} screening and 2 x {opts.validation} validation missions at about "
                         f"{steps:.1f} decisions each, plus the judge); raise --budget or lower --screen/--validation")
    cands = [judge(report, incumbent)] if judge is not None else offline_candidates(report, incumbent)
    log_texts = runs.log_texts()
    for c in cands:
        c.problems = check_candidate(incumbent, c.text, vocab.names, log_texts, set(RULE_PARAMS))
    result.dropped = [c for c in cands if c.problems]
    result.candidates = [c for c in cands if not c.problems and c.text != incumbent]
    if not result.candidates:
        why = "; ".join(c.problems[0] for c in result.dropped[:2]) or "no planning rule answers the failure modes"
        result.action = f"no candidate to test ({why}); the incumbent stays"
        return result
    if opts.dry_run:
        result.chosen = result.candidates[0]
        result.diff = _diff(incumbent, result.chosen.text)
        result.action = f"dry run: {len(result.candidates)} candidate(s); nothing flown, nothing saved"
        return result
    full = evaluation_cost(opts, len(result.candidates), steps)
    if opts.budget is not None and full + (0 if judge is None else 1) > opts.budget:
        result.candidates = result.candidates[:1]  # screen only what the budget holds
    scripted: Callable[[], Planner] = lambda: registered_planner("scripted", project, vocab)  # noqa: E731
    mk = make_planner if (policy == "llm" and make_planner is not None) else scripted
    ev = Evaluator(project, mk, perturb)
    try:
        batch = minibatch(runs, opts.screen)
        pairs: list[tuple[int, str | None]] = [(m.seed, m.goal) for m in batch]
        say(f"screening {len(result.candidates)} candidate(s) on {len(pairs)} of the judge's missions "
            f"(perturb {perturb:g})")
        result.screen["incumbent"] = base = ev.fly(incumbent, pairs)
        winners: list[tuple[int, Candidate]] = []
        for c in result.candidates:
            s = result.screen[c.label] = ev.fly(c.text, pairs)
            say(f"  {c.label}: {s.k}/{s.n} (incumbent {base.k}/{base.n})")
            if s.k > base.k:
                winners.append((s.k, c))
        winners.sort(key=lambda t: -t[0])  # stable: ties keep the judge's order (most frequent mode first)
        # the best, merged with the best that sets other parameters
        partner = next((c for _, c in winners[1:] if merge(winners[0][1], c, incumbent) is not None), None)
        merged = merge(winners[0][1], partner, incumbent) if partner is not None else None
        if merged is not None and not check_candidate(incumbent, merged.text, vocab.names, log_texts,
                                                      set(RULE_PARAMS)):
            result.candidates.append(merged)
            s = result.screen[merged.label] = ev.fly(merged.text, pairs)
            say(f"  {merged.label} (merged): {s.k}/{s.n}")
            if s.k > winners[0][0]:
                winners.insert(0, (s.k, merged))
        best = winners[0] if winners else None
        if best is None:
            result.action = "no candidate beat the incumbent on the screening minibatch; the incumbent stays"
            return result
        chosen = result.chosen = best[1]
        result.diff = _diff(incumbent, chosen.text)
        seeds = [(VALIDATION_SEED + i, None) for i in range(opts.validation)]
        overlap = runs.seeds & {s for s, _ in seeds}
        if overlap:
            raise CadenzaError(f"validation seeds overlap the runs read ({sorted(overlap)[:3]}); refusing to validate")
        say(f"validating {chosen.label} against the incumbent on {opts.validation} fixed-seed missions "
            f"(seeds {VALIDATION_SEED}+, never read by the judge)")
        inc, cand = ev.fly(incumbent, seeds), ev.fly(chosen.text, seeds)
    finally:
        ev.close()
    result.validation = {"incumbent": inc, "candidate": cand}
    conf = project.config.governance.confidence
    lo, hi = paired_diff_interval(*paired_table(cand.outcomes, inc.outcomes), confidence=conf)
    result.paired = (lo, hi)
    result.verdict = "DEPLOY" if lo > 0 else "BLOCK" if hi < 0 else "NEEDS_DATA"
    result.llm_requests = requests() if requests else 0
    _register(project, result, incumbent, chosen, conf)
    return result


def _diff(a: str, b: str) -> str:
    return "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True), "SYSTEM_PROMPT.md (incumbent)",
                                        "SYSTEM_PROMPT.md (candidate)"))


def _register(project: Project, result: TrainResult, incumbent: str, chosen: Candidate, conf: float) -> None:
    reg = open_registry(project)
    result.incumbent_version = ensure_incumbent(reg, incumbent.encode("utf-8"))
    lo, hi = result.paired or (-1.0, 1.0)
    scores = {k: v.as_dict(conf) for k, v in result.validation.items()}
    meta = {"judge": result.label, "source": chosen.source, "parent": result.incumbent_version,
            "rules": [{"key": r.key, "value": r.value, "fixes": r.fixes} for r in chosen.rules],
            "fixes": chosen.fixes, "diff": result.diff, "logs": result.runs.logs, "perturb": result.perturb,
            "policy": result.policy,
            "screen": {k: v.as_dict(conf) for k, v in result.screen.items()},
            "validation": {**scores, "seeds": [VALIDATION_SEED, VALIDATION_SEED + result.validation["candidate"].n - 1],
                           "paired_diff": [round(lo, 4), round(hi, 4)], "confidence": conf}}
    v = result.candidate_version = reg.register(KIND, {PROMPT_NAME: chosen.text.encode("utf-8")}, meta)
    inc, cand = result.validation["incumbent"], result.validation["candidate"]
    metrics = {"candidate": {"episodes": cand.n, "success_rate": cand.k / cand.n,
                             "collision_rate": cand.collisions / cand.n},
               "incumbent": {"episodes": inc.n, "success_rate": inc.k / inc.n,
                             "collision_rate": inc.collisions / inc.n}}
    diff = f"paired difference {100 * (cand.k - inc.k) / cand.n:+.1f} points, {conf:.0%} interval " \
           f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"
    if result.verdict == "DEPLOY":
        result.action = f"promoted {v} to prompt baseline: SYSTEM_PROMPT.md rewritten"
    elif result.verdict == "BLOCK":
        result.action = f"blocked {v} (worse on validation); baseline stays {result.incumbent_version}"
    else:
        result.action = f"{v} not better on validation (tie or too close to call); baseline stays " \
                        f"{result.incumbent_version}"
    reg.record_verdict(KIND, v, result.verdict, [diff], metrics, result.action,
                       {"episodes": cand.n, "seeds": [VALIDATION_SEED, VALIDATION_SEED + cand.n - 1]})
    if result.verdict == "DEPLOY":
        reg.promote(KIND, v, [diff], metrics)
