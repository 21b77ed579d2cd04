"""``curves.png``: success against env steps per arm (mean over seeds, band = lowest to highest seed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cadenza.bench.measure import band
from cadenza.utils.io import atomic_write_with

# colour, line style and marker per arm: arms that sit on top of each other (often at 0) stay visible
STYLE = {"residual": ("tab:blue", "-", "o"), "full": ("tab:orange", "--", "s"), "full-sparse": ("tab:orange", "--",
        "s"),
         "full-dense": ("tab:red", "--", "D"), "sb3": ("tab:green", ":", "^"), "sb3-sparse": ("tab:green", ":", "^"),
         "sb3-dense": ("tab:olive", ":", "v"), "residual-sac": ("tab:purple", "-", "P"),
         "sb3-sac": ("tab:brown", "-.", "X"), "sb3-sac-sparse": ("tab:brown", "-.", "X"),
         "sb3-sac-dense": ("tab:pink", "-.", "x"), "sb3-sac-utd1": ("tab:gray", "-.", "*"),
         "sb3-sac-utd1-sparse": ("tab:gray", "-.", "*"), "sb3-sac-utd1-dense": ("black", "-.", "*")}


def plot_curves(report: dict[str, Any], path: Path, *, log_x: bool = False, mark_reach: bool = True) -> None:
    """``log_x``: env steps on a log axis (the step-0 evaluation left out), so arms run for budgets far apart
    read on one figure; ``mark_reach``: each arm's median steps to threshold in its legend entry and as a
    vertical line (off where the caller measures reaching differently, as benchmarks/sample_efficiency.py does)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["settings"]
    thr = s["success_threshold"]
    n = len(s["seeds"])
    fig, ax = plt.subplots(figsize=(8.0, 4.8))
    for z, a in enumerate(report["arms"]):
        if a["skipped"] or not a["runs"]:
            continue
        xs, mean, lo, hi = band([[p for p in r["curve"] if p["env_steps"] > 0 or not log_x] for r in a["runs"]])
        color, ls, marker = STYLE.get(a["id"], (None, "-", "o"))
        m = a["summary"]["steps_to_threshold_median"]
        ax.plot(xs, mean, ls=ls, marker=marker, ms=4, lw=2, color=color, zorder=3 + 0.1 * (10 - z),
                label=arm_label(a, n, thr, mark_reach))
        if len(a["runs"]) > 1:
            ax.fill_between(xs, lo, hi, color=color, alpha=0.18, lw=0)
        if m is not None and mark_reach:
            ax.axvline(m, color=color, ls=(0, (2, 3)), lw=1, alpha=0.8)
    b = report["base"]["curve_point"]  # measured on the curves' episodes
    ax.axhline(b["success_rate"], color="dimgray", ls="-.", lw=1.2,
               label=f"base alone {b['success_rate']:.0%} (on the curves' {b['episodes']} episodes)")
    ax.axhline(thr, color="black", ls=":", lw=1.5, label=f"deploy threshold {thr:.0%}")
    if log_x:
        ax.set_xscale("log")
    else:
        ax.set_xlim(left=0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("env steps (training, log scale)" if log_x else "env steps (training)")
    ax.set_ylabel(f"success on held-out episodes\n({s['eval_episodes']} per point, {s['final_episodes']} at the end)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: _k(x)))
    ax.grid(alpha=0.25)
    ax.set_title(f"residual vs full RL [{report['task']}], level {s['level']}, {n} seed{'s' if n > 1 else ''}"
                 f"{', band = min-max over seeds' if n > 1 else ''}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def arm_label(arm: dict[str, Any], seeds: int, threshold: float, mark_reach: bool) -> str:
    """An arm's legend entry: its label, how many of the ``seeds`` it has when fewer (a partial, resumable bench), and
    with ``mark_reach`` its median steps to ``threshold``."""
    label = arm["label"] + (f", {len(arm['runs'])} of {seeds} seeds" if len(arm["runs"]) < seeds else "")
    if not mark_reach:
        return label
    m = arm["summary"]["steps_to_threshold_median"]
    return f"{label}  (to {threshold:.0%}: {'not reached' if m is None else f'{m:,.0f} steps'})"


def _k(x: float) -> str:
    if not math.isfinite(x):
        return ""
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:g}k"
    return f"{x:g}"
