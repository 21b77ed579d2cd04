"""Replay images of missions, drawn from a run log alone (so a crashed run can be drawn too).

One panel per mission: the debris field, the step and the ledge above it, the rocks, the victim with
its reach circle, the start pose, the path coloured by posture, numbered decision points, and a red
cross where a collision happened. A run with a single mission also lists its action steps.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cadenza.mission.runlog import RunLog, read_log
from cadenza.mission.world import Site
from cadenza.utils.io import atomic_write_with

POSTURE_COLOURS = {"standing": "#1f77b4", "crawling": "#e07b00", "sitting": "#2ca02c"}
MAX_PANELS = 12


def _panel(ax: Any, ep: dict[str, Any], title: str) -> None:
    from matplotlib.patches import Circle, Rectangle

    site = Site.from_dict(ep["start"]["site"])
    x0, x1, y0, y1 = site.extent
    for st in ep["steps"]:  # make room for wherever the robot went
        for px, py in st["trace"]:
            x0, x1, y0, y1 = min(x0, px - 0.5), max(x1, px + 0.5), min(y0, py - 0.5), max(y1, py + 0.5)
    ax.add_patch(Rectangle((site.step_x, y0), x1 - site.step_x, y1 - y0, color="#eeeeee", zorder=0))
    ax.plot([site.step_x, site.step_x], [y0, y1], color="#555555", lw=3, zorder=1)
    ax.text(site.step_x + 0.05, y1 - 0.1, "step / ledge", va="top", fontsize=8, color="#333333")
    ax.add_patch(Rectangle((site.debris_x0, y0), site.debris_x1 - site.debris_x0, y1 - y0, facecolor="#c8a27a",
                           alpha=0.55, hatch="xx", edgecolor="#8b5a2b", lw=0, zorder=1))
    ax.text(site.debris_x0 + 0.05, y1 - 0.1, "debris\n(crawl)", va="top", fontsize=8, color="#5a3a1a")
    for rx, ry, rr in site.rocks:
        ax.add_patch(Circle((rx, ry), rr, color="#666666", zorder=3))
    vx, vy = site.victim
    ax.add_patch(Circle((vx, vy), 0.6, fill=False, ls="--", color="#d62728", zorder=3))
    ax.plot([vx], [vy], marker="*", ms=16, color="#d62728", zorder=4)
    ax.text(vx, vy - 0.75, "victim", ha="center", fontsize=8, color="#d62728")
    yaw = site.start_yaw
    ax.annotate("", xy=(0.45 * math.cos(yaw), 0.45 * math.sin(yaw)), xytext=(0, 0),
                arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.5}, zorder=5)
    ax.plot([0], [0], marker="o", ms=6, color="black", zorder=5)
    for st in ep["steps"]:
        tr = st["trace"]
        if len(tr) > 1:
            xs, ys = zip(*tr, strict=True)
            ax.plot(xs, ys, color=POSTURE_COLOURS.get(st["posture"], "#1f77b4"), lw=2, zorder=4)
        sx, sy = tr[0]
        ax.plot([sx], [sy], marker="o", ms=3, color="black", zorder=6)
        ax.text(sx, sy + 0.08, str(st["step"]), fontsize=6, ha="center", zorder=6)
        if st["collision"]:
            ex, ey = tr[-1]
            ax.plot([ex], [ey], marker="X", ms=14, color="red", mec="black", zorder=7)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)


def _outcome(ep: dict[str, Any]) -> str:
    end = ep["end"]
    if end is None:
        return "unfinished (the run stopped)"
    return f"{'SUCCESS' if end['success'] else 'FAIL'}: {end['reason']}, {end['steps']} steps"


def render_replay(log: RunLog | str | Path, out: str | Path, max_panels: int = MAX_PANELS) -> Path:
    """Draw the missions of ``log`` (the first ``max_panels``) into a PNG at ``out``; returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not isinstance(log, RunLog):
        log = read_log(log, skip_bad_lines=True)
    eps = [e for e in log.episodes().values() if e["start"] is not None][:max_panels]
    h = log.header
    single = len(eps) == 1
    n = max(len(eps), 1)
    cols = 1 if single else min(3, n)
    rows = math.ceil(n / cols)
    fig_w = 13 if single else 5.2 * cols
    fig, axes = plt.subplots(rows, cols + (1 if single else 0), figsize=(fig_w, 4.2 * rows + 0.8), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1.3]} if single else None)
    for i, ep in enumerate(eps):
        s = ep["start"]
        _panel(axes[i // cols][i % cols], ep, f"mission {s['episode']} (seed {s['seed']}): {_outcome(ep)}\n"
                                               f"goal: {s['goal']}")
    for j in range(len(eps), rows * cols):
        axes[j // cols][j % cols].axis("off")
    if single:
        side = axes[0][1]
        side.axis("off")
        lines = [f"{st['step']:>2}. {st['action_text']}" + ("  <- collision" if st["collision"] else "")
                 for st in eps[0]["steps"]]
        side.text(0.0, 1.0, "action steps\n\n" + "\n".join(lines[:45]), va="top", family="monospace", fontsize=8,
                  transform=side.transAxes)
    ctrl = h["controller"]
    label = ctrl["kind"] + (f" {ctrl['version']}" if ctrl.get("version") else "")
    shown = f"first {len(eps)} of {h.get('episodes', len(eps))} missions" if len(eps) < h.get("episodes", 0) else ""
    fig.suptitle(f"cadenza env run {h['run_id']}  [{h['task']}]  policy {h['policy']}, controller {label}, "
                 f"perturb {h['perturb']}  {shown}", fontsize=11)
    handles = [Line2D([], [], color=c, lw=2, label=p) for p, c in POSTURE_COLOURS.items()]
    handles += [Line2D([], [], color="red", marker="X", ls="", ms=10, label="collision"),
                Line2D([], [], color="#d62728", marker="*", ls="", ms=12, label="victim (reach circle)"),
                Line2D([], [], color="#666666", marker="o", ls="", ms=9, label="rock")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    out = Path(out)
    atomic_write_with(out, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return out
