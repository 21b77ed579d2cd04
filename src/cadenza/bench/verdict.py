"""The bench verdict (pure): does the residual arm win against full RL, and by what factor?

Outcomes:

* ``RESIDUAL_WINS``: against every full-RL arm the residual reached the success threshold in fewer env
  steps (or the other arm never did), and its final success is not worse by more than the margin
  (Newcombe interval of the difference above ``-margin``);
* ``RESIDUAL_LOSES``: some full-RL arm reached the threshold in fewer steps, or reached it while the
  residual did not;
* ``NEEDS_DATA``: no arm reached the threshold within the budget (nothing to judge a deployable
  policy by: run a larger budget), or there is no full-RL arm;
* ``UNDECIDED``: anything else (a tie, or a residual that is faster but ends less accurate, or an
  accuracy interval too wide to call).

The sample-efficiency ratio is ``full steps-to-threshold / residual steps-to-threshold`` (medians over
seeds); when the full arm never reached the threshold its steps are only known to exceed its budget,
so the ratio is a lower bound, written ``> X``. The cost ratio is the same with dollars spent up to the
threshold (each run's dollars per env step times its steps to threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from cadenza.bench.cost import cost_at
from cadenza.bench.measure import median_steps
from cadenza.governance.stats import diff_interval

Outcome = Literal["RESIDUAL_WINS", "RESIDUAL_LOSES", "UNDECIDED", "NEEDS_DATA"]


@dataclass(frozen=True)
class ArmResult:
    """What the verdict needs from one arm (all seeds)."""

    name: str
    steps_to_threshold: tuple[int | None, ...]  # per seed; None = not reached
    env_steps: float  # mean env steps run per seed
    successes: int  # final evaluation, pooled over seeds
    episodes: int
    dollars: float  # mean training cost per seed

    @property
    def median_steps(self) -> float | None:
        return median_steps(self.steps_to_threshold)

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    def cost_to_threshold(self) -> float | None:
        m = self.median_steps
        return None if m is None or self.env_steps <= 0 else cost_at(self.dollars, round(self.env_steps), m)

    def reached_text(self) -> str:
        m = self.median_steps
        n = len(self.steps_to_threshold)
        hits = sum(v is not None for v in self.steps_to_threshold)
        if m is None:
            return f"not within {self.env_steps:,.0f} env steps ({hits}/{n} seeds reached it)"
        return f"{m:,.0f} env steps ({hits}/{n} seeds reached it)"


@dataclass
class Ratio:
    value: float | None  # None: undefined (see text)
    lower_bound: bool
    text: str


@dataclass
class Comparison:
    vs: str
    samples: Literal["win", "lose", "tie", "none"]
    sample_ratio: Ratio
    cost_ratio: Ratio
    success_diff: float  # residual minus the other arm, final success
    diff_low: float
    diff_high: float
    accuracy: Literal["better", "non-inferior", "worse", "undecided"]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BenchVerdict:
    outcome: Outcome
    line: str
    threshold: float
    comparisons: list[Comparison] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    headline_sample_ratio: Ratio | None = None
    headline_cost_ratio: Ratio | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def format_ratio(value: float | None, lower_bound: bool) -> str:
    if value is None:
        return "n/a"
    return f"{'> ' if lower_bound else ''}{value:,.1f}x"


def _ratio(res: float | None, other: float | None, other_cap: float) -> Ratio:
    """``other / res``; ``other`` None means "more than ``other_cap``" (a lower bound)."""
    if res is None:
        return Ratio(None, False, "n/a (the residual did not reach the threshold)")
    if res <= 0:
        if other is not None and other <= 0:
            return Ratio(1.0, False, "1.0x (both already at the threshold)")
        return Ratio(None, False, "unbounded (the residual needed no training: the base alone meets the threshold)")
    if other is None:
        v = other_cap / res
        return Ratio(v, True, format_ratio(v, True))
    v = other / res
    return Ratio(v, False, format_ratio(v, False))


def accuracy_call(diff_low: float, diff_high: float, margin: float) -> Literal["better", "non-inferior", "worse",
        "undecided"]:
    if diff_low > 0:
        return "better"
    if diff_low >= -margin:
        return "non-inferior"
    if diff_high < 0:
        return "worse"
    return "undecided"


def compare(res: ArmResult, other: ArmResult, margin: float, confidence: float = 0.95) -> Comparison:
    r, f = res.median_steps, other.median_steps
    if r is None and f is None:
        samples = "none"
    elif r is None:
        samples = "lose"
    elif f is None:
        samples = "win"
    else:
        samples = "win" if f > r else "lose" if f < r else "tie"
    sample_ratio = _ratio(r, f, other.env_steps)
    rc, fc = res.cost_to_threshold(), other.cost_to_threshold()
    if rc is not None and rc <= 0 and r is not None and r > 0:
        cost_ratio = Ratio(None, False, "n/a (a zero price)")
    else:
        cost_ratio = _ratio(rc, fc, other.dollars)
    lo, hi = diff_interval(res.successes, res.episodes, other.successes, other.episodes, confidence)
    return Comparison(vs=other.name, samples=samples, sample_ratio=sample_ratio, cost_ratio=cost_ratio,
                      success_diff=res.success_rate - other.success_rate, diff_low=lo, diff_high=hi,
                      accuracy=accuracy_call(lo, hi, margin))


_SAMPLES = {"win": "residual sooner", "lose": "residual later or never", "tie": "the same",
            "none": "neither reached it"}


def _weakest(ratios: Sequence[Ratio]) -> Ratio | None:
    """The smallest defined ratio (the most conservative claim); an exact value beats an equal lower bound."""
    defined = [r for r in ratios if r.value is not None]
    if not defined:
        return ratios[0] if ratios else None
    return min(defined, key=lambda r: (r.value, r.lower_bound))


def decide(res: ArmResult, others: Sequence[ArmResult], *, threshold: float, margin: float,
           confidence: float = 0.95) -> BenchVerdict:
    thr = f"{threshold:.0%}"
    if not others:
        return BenchVerdict("NEEDS_DATA", "no full-RL arm ran, so there is nothing to compare the "
                            "residual with", threshold, reasons=[f"residual: {res.reached_text()}"])
    comps = [compare(res, o, margin, confidence) for o in others]
    reasons = [f"against {c.vs}: steps to threshold {_SAMPLES[c.samples]}, sample ratio {c.sample_ratio.text}, "
               f"cost ratio {c.cost_ratio.text}; final success residual minus it {c.success_diff:+.1%} "
               f"[{c.diff_low:+.1%}, {c.diff_high:+.1%}] ({c.accuracy})" for c in comps]
    head_s = _weakest([c.sample_ratio for c in comps])
    head_c = _weakest([c.cost_ratio for c in comps])
    finals = ", ".join(f"{a.name} {a.success_rate:.1%}" for a in (res, *others))

    def out(outcome: Outcome, line: str) -> BenchVerdict:
        return BenchVerdict(outcome, line, threshold, comps, reasons, head_s, head_c)

    losers = [(c, o) for c, o in zip(comps, others, strict=True) if c.samples == "lose"]
    if losers:
        c, o = losers[0]
        return out("RESIDUAL_LOSES", f"residual loses: {o.name} reaches {thr} success in {o.reached_text()}, "
                   f"the residual in {res.reached_text()}")
    if all(c.samples == "none" for c in comps):
        return out("NEEDS_DATA", f"no arm reached {thr} success within the budget; run a larger "
                   f"--steps (final success: {finals})")
    if all(c.samples == "win" and c.accuracy in ("better", "non-inferior") for c in comps):
        vs = "; ".join(f"{o.name} {o.reached_text()} (sample ratio {c.sample_ratio.text}, cost ratio "
                       f"{c.cost_ratio.text})" for c, o in zip(comps, others, strict=True))
        return out("RESIDUAL_WINS", f"residual wins: reaches {thr} success in {res.reached_text()}; {vs}")
    why = []
    for c in comps:
        if c.samples == "tie":
            why.append(f"{c.vs} reaches the threshold at the same step")
        elif c.accuracy == "worse":
            why.append(f"the residual is faster than {c.vs} but ends less accurate ({c.success_diff:+.1%})")
        elif c.accuracy == "undecided":
            why.append(f"the final-success difference with {c.vs} is too uncertain to call "
                       f"([{c.diff_low:+.1%}, {c.diff_high:+.1%}]; evaluate more episodes)")
    return out("UNDECIDED", "undecided: " + "; ".join(why or ["mixed results"]))
