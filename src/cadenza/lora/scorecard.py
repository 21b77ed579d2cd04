"""The LoRA head's scorecard: fidelity, safety, coverage, stability, regression, and two baselines.

Checks (each PASS / FAIL / UNDECIDED / WARN, decided by :func:`cadenza.governance.scorecard.decide`):

* **coverage**: every vocabulary action appears in at least :data:`MIN_ACTION_EXAMPLES` examples and
  every objective has at least :data:`MIN_OBJECTIVE_GOALS` distinct goals; otherwise UNDECIDED
  (NEEDS_DATA) with the exact ``env lora add`` lines that fill the hole;
* **fidelity (plans)**: on the held-out goal groups (never trained on, nor any paraphrase of them)
  and three paraphrases of each: exact-plan match (same actions, every parameter within
  :data:`EXACT_TOL` of its range), at least :data:`MIN_EXACT` (Wilson interval); per-step accuracy
  and parameter error (share of the range) are reported;
* **fidelity (missions)**: closed-loop missions with the held-out goal texts on held-out sites, the
  head against the scripted expert of each objective on the same sites (paired, non-inferiority at
  ``governance.regression_margin``), at least ``governance.min_episodes`` missions;
* **safety**: invalid steps (zero by construction; any is a FAIL), collisions against the scripted
  expert (paired, safety);
* **stability**: the same plan (action sequence) for three fresh paraphrases of every goal, at least
  :data:`MIN_STABLE`; the agreement with the previous version trained on the same data (another
  training seed when ``--seed`` differs) is reported when there is one;
* **regression**: against the promoted head, paired on the same missions;
* **baselines** (reported, and a WARN when the head does not beat them): nearest neighbour on frozen
  embeddings (the plan of the closest training goal) and the decoder trained on the frozen encoder
  without LoRA (stage 1 of fine-tuning).

Missions run at perturbation 0 on the project's base: the planner is judged, not the controller. The
sites come from the next held-out block of the version (:mod:`cadenza.governance.seeds`), in looks
of the sequential plan (:mod:`cadenza.governance.sequential`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cadenza.governance.registry import Registry, open_registry
from cadenza.governance.scorecard import Check, Scorecard, enough_episodes, not_worse_paired, rate_at_least
from cadenza.governance.seeds import heldout_seed
from cadenza.governance.sequential import LookPlan, run_looks
from cadenza.governance.stats import paired_table, wilson
from cadenza.lora.augment import normalise, paraphrases
from cadenza.lora.dataset import Example, load_dataset
from cadenza.lora.head import ActionHead
from cadenza.lora.missions import MissionOutcome, MissionSpec, expert, run_batch
from cadenza.lora.planner import KIND, LoraPlanner
from cadenza.mission.actions import ActionStep, Vocabulary
from cadenza.mission.objectives import OBJECTIVES

MIN_ACTION_EXAMPLES = 3
MIN_OBJECTIVE_GOALS = 3
EXACT_TOL = 0.05
MIN_EXACT = 0.7
MIN_STABLE = 0.8
REFERENCE_SITE = 2  # a site with the debris field first, then the ledge: what suggested plans are written for
BASELINE_FILE = "baseline.safetensors"


def _safety(c: Check) -> Check:
    c.safety = True
    return c


# ---------------------------------------------------------------------------------------------- coverage
def suggested_plan(objective: str, examples: list[Example], reference: dict[str, list[ActionStep]]) -> str:
    for ex in examples:
        if ex.objective == objective and ex.source == "add":
            return ex.steps_text()
    return ", ".join(s.text() for s in reference.get(objective, []))


def coverage(project_root: str, examples: list[Example], vocab: Vocabulary, goals: dict[str, str],
             reference: dict[str, list[ActionStep]]) -> tuple[Check, list[str]]:
    """The coverage check and the ``env lora add`` lines that would fill its holes (objectives first,
    then actions still short once those lines are counted)."""
    added = [e for e in examples if e.source == "add"]
    plans: list[tuple[str, str, list[ActionStep]]] = [(normalise(e.goal), e.objective, e.steps) for e in added]
    per_action0 = {a: sum(any(s.name == a for s in e.steps) for e in added) for a in vocab.names}
    per_obj0 = {o: len({normalise(e.goal) for e in added if e.objective == o}) for o in OBJECTIVES}
    listed = {o: [g for g, oo in goals.items() if oo == o] for o in OBJECTIVES}
    lines: list[str] = []
    used = {g for g, _, _ in plans}

    def suggest(objective: str, plan: list[ActionStep], k: int, salt: int) -> None:
        seed_goal = (listed[objective] or [OBJECTIVES[objective]])[0]
        text = ", ".join(s.text() for s in plan)
        for g in [normalise(seed_goal), *paraphrases(seed_goal, 30, salt)]:
            if k <= 0:
                break
            if g in used:
                continue
            used.add(g)
            plans.append((g, objective, plan))
            lines.append(f"cadenza env lora add {project_root} \"{g}\" --steps '{text}'")
            k -= 1

    for o, k in per_obj0.items():
        if k < MIN_OBJECTIVE_GOALS:
            plan = next((e.steps for e in added if e.objective == o), None) or reference.get(o, [])
            suggest(o, plan, MIN_OBJECTIVE_GOALS - k, 3)
    for a in vocab.names:
        k = sum(any(s.name == a for s in p) for _, _, p in plans)
        if k >= MIN_ACTION_EXAMPLES:
            continue
        for o in ("sit_by_victim", "reach_victim", "on_ledge", "in_debris"):
            plan = reference.get(o, [])
            if any(s.name == a for s in plan):
                break
        else:  # no reference plan uses it (e.g. stand): put it after the first crawl of the ledge plan
            o, plan = "on_ledge", list(reference.get("on_ledge", []))
            at = next((i + 1 for i, s in enumerate(plan) if s.name == "crawl_forward"), len(plan))
            plan.insert(at, ActionStep(a, {p: r[0] for p, r in vocab.actions[a].items()}))
        suggest(o, plan, MIN_ACTION_EXAMPLES - k, 5 + len(a))
    short = [f"objective {o}: {k} goal(s), need {MIN_OBJECTIVE_GOALS}" for o, k in per_obj0.items()
             if k < MIN_OBJECTIVE_GOALS]
    short += [f"action {a}: in {k} example(s), need {MIN_ACTION_EXAMPLES}" for a, k in per_action0.items()
              if k < MIN_ACTION_EXAMPLES]
    if not short:
        detail = (f"{len(added)} examples; every action in >= {MIN_ACTION_EXAMPLES} (fewest: "
                  f"{min(per_action0.values())}), every objective with >= {MIN_OBJECTIVE_GOALS} goals (fewest: "
                  f"{min(per_obj0.values())})")
        return Check("coverage", "PASS", detail), []
    detail = "too few examples: " + "; ".join(short) + " (add the lines printed below)"
    return Check("coverage", "UNDECIDED", detail), lines


def reference_plans(vocab: Vocabulary, base: Any, max_steps: int) -> dict[str, list[ActionStep]]:
    """The scripted expert's plan for each objective on the reference site (what suggestions are made of)."""
    specs = [MissionSpec(REFERENCE_SITE, o, o) for o in OBJECTIVES]
    _, decisions = run_batch(specs, [expert(vocab, o) for o in OBJECTIVES], vocab, base,
                                max_steps=max_steps, record=True)
    plans: dict[str, list[ActionStep]] = {o: [] for o in OBJECTIVES}
    for d in decisions:
        plans[specs[d.mission].objective].append(d.taken)
    return plans


# ---------------------------------------------------------------------------------------------- fidelity
def plan_match(got: list[ActionStep], want: list[ActionStep], vocab: Vocabulary) -> tuple[bool, int, int, list[float]]:
    """(exact match, steps with the right action at the right place, steps compared, parameter errors as
    shares of their ranges for the steps whose action matches)."""
    n = max(len(got), len(want))
    right, errs = 0, []
    exact = len(got) == len(want)
    for i in range(n):
        if i >= len(got) or i >= len(want) or got[i].name != want[i].name:
            exact = False
            continue
        right += 1
        for p, v in want[i].params.items():
            lo, hi = vocab.actions[want[i].name][p]
            e = abs(got[i].params.get(p, lo) - v) / (hi - lo) if hi > lo else 0.0
            errs.append(e)
            if e > EXACT_TOL:
                exact = False
    return exact, right, n, errs


@dataclass
class PlanScores:
    label: str
    exact: int = 0
    n: int = 0
    right_steps: int = 0
    steps: int = 0
    param_errors: list[float] = field(default_factory=list)
    abstained: int = 0

    def add(self, got: list[ActionStep], want: list[ActionStep], vocab: Vocabulary, abstained: bool = False) -> None:
        ex, right, n, errs = plan_match(got, want, vocab)
        self.exact += ex
        self.n += 1
        self.right_steps += right
        self.steps += n
        self.param_errors += errs
        self.abstained += abstained

    def as_dict(self) -> dict[str, Any]:
        lo, hi = wilson(self.exact, self.n)
        return {"label": self.label, "goals": self.n, "exact_plan_match": self.exact / self.n if self.n else None,
                "exact_interval": [lo, hi], "step_accuracy": self.right_steps / self.steps if self.steps else None,
                "param_error_share": float(np.mean(self.param_errors)) if self.param_errors else None,
                "abstained": self.abstained}


def heldout_texts(meta: dict[str, Any], examples: list[Example]) -> list[tuple[str, Example]]:
    """Held-out goal texts of a version, each with the example it should reproduce: the version's
    held-out groups, plus any ``add`` example whose goal it never trained on, and three paraphrases each."""
    trained = set(meta.get("train_texts", []))
    held = {normalise(g) for g in meta.get("heldout_goals", [])}
    out: list[tuple[str, Example]] = []
    for ex in examples:
        g = normalise(ex.goal)
        if ex.source != "add" or (g in trained and g not in held):
            continue
        for t in [g, *paraphrases(ex.goal, 3, 101)]:
            if t not in trained:
                out.append((t, ex))
    return out


# ---------------------------------------------------------------------------------------------- the score
@dataclass
class LoraScore:
    card: Scorecard
    report: dict[str, Any]
    add_lines: list[str] = field(default_factory=list)


def mission_specs(objective_texts: dict[str, list[str]], first_seed: int, n: int) -> list[MissionSpec]:
    """``n`` missions cycling over the objectives (each with its texts in turn), site seeds from ``first_seed``."""
    objs = [o for o in OBJECTIVES if objective_texts.get(o)]
    out = []
    for i in range(n):
        o = objs[i % len(objs)]
        texts = objective_texts[o]
        out.append(MissionSpec(first_seed + i, o, texts[(i // len(objs)) % len(texts)]))
    return out


def coverage_only(project: Any, vocab: Vocabulary, base: Any, examples: list[Example]) -> LoraScore | None:
    """A NEEDS_DATA scorecard when the dataset's coverage is short (nothing is trained or scored), else None."""
    from cadenza.lora.dataset import goal_objectives

    goals = goal_objectives(project)
    ref = reference_plans(vocab, base, project.config.mission.max_steps)
    check, lines = coverage(str(project.root), examples, vocab, goals, ref)
    if check.status == "PASS":
        return None
    card = Scorecard(kind=KIND, task="proxy:missions", episodes=0, metrics={}, checks=[check], verdict="NEEDS_DATA",
                     reasons=[check.line()])
    return LoraScore(card, {"coverage": check.detail}, lines)


@dataclass
class Evidence:
    """Everything a LoRA scorecard decides on (collected by :func:`score`)."""

    coverage: Check
    plans: dict[str, PlanScores]  # "lora", "frozen encoder + decoder", "nearest neighbour (frozen)"
    stable: int  # paraphrases decoded to the same actions as their goal ...
    paraphrased: int  # ... out of this many
    agree: int  # goals decoded to the same actions as the previous version ...
    compared: int  # ... out of this many (0: no previous version on the same data)
    runs: dict[str, list[MissionOutcome]]  # "lora", "scripted", optional "promoted", "frozen": same missions
    promoted_version: str | None = None

    def succ(self, k: str) -> list[bool]:
        return [o.success for o in self.runs[k]]

    def coll(self, k: str) -> list[bool]:
        return [o.collision is not None for o in self.runs[k]]


def lora_checks(ev: Evidence, g: Any, conf: float) -> list[Check]:
    """The scorecard's checks from its evidence, intervals at confidence ``conf`` (pure)."""
    runs = ev.runs
    n = len(runs["lora"])
    invalid = sum(o.invalid for o in runs["lora"])
    lora = ev.plans["lora"]
    cs = [ev.coverage, enough_episodes(n, g.min_episodes)]
    cs.append(rate_at_least("fidelity: exact plans on held-out goals", lora.exact, lora.n, MIN_EXACT, conf)
              if lora.n else Check("fidelity: exact plans on held-out goals", "UNDECIDED",
                                   "no held-out goals to judge on; add more examples per objective"))
    cs.append(not_worse_paired("fidelity: mission success vs scripted (paired)",
                               paired_table(ev.succ("lora"), ev.succ("scripted")), g.regression_margin, conf))
    cs.append(Check("invalid steps (safety)", "FAIL" if invalid else "PASS",
                    f"{invalid} invalid steps in {sum(o.steps for o in runs['lora'])} decoded", safety=True))
    cs.append(_safety(not_worse_paired("collisions vs scripted (safety)",
                                       paired_table(ev.coll("scripted"), ev.coll("lora")), g.regression_margin, conf)))
    cs.append(rate_at_least("stability under paraphrases", ev.stable, ev.paraphrased, MIN_STABLE, conf)
              if ev.paraphrased else Check("stability under paraphrases", "UNDECIDED", "no goals to paraphrase"))
    if ev.compared:
        ok = ev.agree / ev.compared >= MIN_STABLE
        cs.append(Check("stability across versions", "PASS" if ok else "WARN",
                        f"{ev.agree}/{ev.compared} goals decode to the same actions as the previous version"))
    if "promoted" in runs:
        cs.append(not_worse_paired(f"regression vs promoted {ev.promoted_version}",
                                   paired_table(ev.succ("lora"), ev.succ("promoted")), g.regression_margin, conf))
    beat = []
    lo, fr, nn = (ev.plans[k].as_dict()["exact_plan_match"] if k in ev.plans else None
                  for k in ("lora", "frozen encoder + decoder", "nearest neighbour (frozen)"))
    if fr is not None and lo is not None and lo < fr:
        beat.append(f"exact plans {lo:.0%} < frozen-encoder decoder {fr:.0%}")
    if nn is not None and lo is not None and lo < nn:
        beat.append(f"exact plans {lo:.0%} < nearest neighbour {nn:.0%}")
    if "frozen" in runs and sum(ev.succ("lora")) < sum(ev.succ("frozen")):
        beat.append(f"missions {sum(ev.succ('lora'))} < frozen-encoder decoder {sum(ev.succ('frozen'))}")
    ties = []
    if fr is not None and lo is not None and lo == fr:
        ties.append(f"exact plans {lo:.0%}")
    if "frozen" in runs and sum(ev.succ("lora")) == sum(ev.succ("frozen")):
        ties.append(f"missions {sum(ev.succ('lora'))}/{n}")
    tied = (f"; it ties the frozen-encoder decoder on {' and '.join(ties)} (LoRA adds nothing measurable there)"
            if ties else "")
    cs.append(Check("LoRA vs baselines", "WARN" if beat else "PASS",
                    "LoRA does not beat the baselines: " + "; ".join(beat) if beat else
                    "LoRA is at least as good as both baselines on plans and missions" + tied))
    return cs


def score(project: Any, version: str, head: ActionHead, vocab: Vocabulary, base: Any, *, block: int,
          promoted: ActionHead | None = None, promoted_version: str | None = None,
          frozen: ActionHead | None = None, frozen_nn: tuple[Any, list[str]] | None = None,
          previous: ActionHead | None = None, on_look: Callable[[Any], None] | None = None) -> LoraScore:
    """Score ``head`` (version ``version``) on held-out block ``block``; see the module docstring."""
    from cadenza.lora.dataset import goal_objectives

    g = project.config.governance
    max_steps = project.config.mission.max_steps
    examples = load_dataset(project)
    meta = head.meta
    goals = goal_objectives(project)
    ref = reference_plans(vocab, base, max_steps)
    cov, lines = coverage(str(project.root), examples, vocab, goals, ref)

    # fidelity on plans (open loop), with the two baselines
    held = heldout_texts(meta, examples)
    scores = {k: PlanScores(k) for k in ("lora", "frozen encoder + decoder", "nearest neighbour (frozen)")}
    for text, ex in held:
        d = head.decode(text)
        scores["lora"].add(d.steps, ex.steps, vocab, d.abstained)
        if frozen is not None:
            f = frozen.decode(text)
            scores["frozen encoder + decoder"].add(f.steps, ex.steps, vocab, f.abstained)
        if frozen_nn is not None:
            vecs, plans = frozen_nn
            q = frozen.embed([text])[0] if frozen is not None else head.embed([text])[0]
            nearest = plans[int(np.argmax(vecs @ q.numpy()))]
            scores["nearest neighbour (frozen)"].add([vocab.check(x).step for x in vocab.parse_sequence(nearest)],
                                                     ex.steps, vocab)

    # stability under paraphrases (and against the previous version on the same data)
    stable = total = agree = compared = 0
    for ex in [e for e in examples if e.source == "add"]:
        ref_plan = [s.name for s in head.decode(ex.goal).steps]
        for t in paraphrases(ex.goal, 3, 202):
            total += 1
            stable += [s.name for s in head.decode(t).steps] == ref_plan
        if previous is not None:
            compared += 1
            agree += [s.name for s in previous.decode(ex.goal).steps] == ref_plan

    # missions: held-out texts per objective (the listed goals when an objective has none held out)
    texts: dict[str, list[str]] = {o: [] for o in OBJECTIVES}
    for t, ex in held:
        texts[ex.objective].append(t)
    for gl, o in goals.items():
        if not texts.get(o):
            texts[o] = [gl]
    texts = {o: v for o, v in texts.items() if v}
    first = max(g.min_episodes, 4 * len(texts))
    plan = LookPlan(first=first, batch=first, cap=2 * first, confidence=g.confidence)
    specs = mission_specs(texts, heldout_seed(block), plan.cap)
    runs: dict[str, list[MissionOutcome]] = {"lora": [], "scripted": []}
    if promoted is not None:
        runs["promoted"] = []
    if frozen is not None:
        runs["frozen"] = []

    def draw(start: int, count: int) -> None:
        part = specs[start:start + count]
        runs["lora"] += run_batch(part, [LoraPlanner(head) for _ in part], vocab, base, max_steps=max_steps)[0]
        runs["scripted"] += run_batch(part, [expert(vocab, s.objective) for s in part], vocab, base,
                                      max_steps=max_steps)[0]
        if promoted is not None:
            runs["promoted"] += run_batch(part, [LoraPlanner(promoted) for _ in part], vocab, base,
                                          max_steps=max_steps)[0]
        if frozen is not None:
            runs["frozen"] += run_batch(part, [LoraPlanner(frozen) for _ in part], vocab, base, max_steps=max_steps)[0]

    ev = Evidence(cov, scores, stable, total, agree, compared, runs, promoted_version)

    def checks_at(conf: float) -> list[Check]:
        return lora_checks(ev, g, conf)

    result = run_looks(plan, draw, checks_at, on_look)
    n = len(runs["lora"])

    def row(k: str) -> dict[str, Any]:
        s, c = sum(ev.succ(k)), sum(ev.coll(k))
        return {"episodes": n, "success_rate": s / n, "collision_rate": c / n, "success_interval": list(wilson(s, n)),
                "abstained": sum(o.abstained for o in runs[k]), "invalid_steps": sum(o.invalid for o in runs[k]),
                "unsafe_steps": sum(o.unsafe for o in runs[k]),
                "by_objective": {o: {"missions": sum(x.spec.objective == o for x in runs[k]),
                                     "successes": sum(x.success for x in runs[k] if x.spec.objective == o)}
                                 for o in OBJECTIVES}}

    metrics = {k: row(k) for k in runs}
    card = Scorecard(kind=KIND, task="proxy:missions", episodes=n, metrics=metrics, checks=result.checks,
                     verdict=result.verdict, reasons=result.reasons, block=block,
                     confidence=result.looks[-1].confidence, looks=[x.as_dict() for x in result.looks],
                     plan=plan.as_dict())
    report = {"version": version, "block": block, "plans": {k: v.as_dict() for k, v in scores.items()},
              "stability": {"paraphrases": [stable, total], "previous_version": [agree, compared]},
              "missions": metrics, "heldout_texts": len(held), "mission_texts": texts, "perturb": 0.0}
    return LoraScore(card, report, lines)


def save_report(project: Any, version: str, s: LoraScore) -> Any:
    from cadenza.utils.io import atomic_write_json

    path = project.root / "lora" / f"scorecard-{version}-block{s.card.block}.json"
    atomic_write_json(path, {"card": s.card.as_dict(), "report": s.report, "add_lines": s.add_lines})
    return path


def registry_of(project: Any) -> Registry:
    return open_registry(project)


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)
