"""Console views of the safe runtime: the A/B table and the health report."""

from __future__ import annotations

from rich.table import Table

from cadenza.cli.common import console, kv_table
from cadenza.runtime.ab import ABResult
from cadenza.runtime.health import HealthReport


def print_health(h: HealthReport, title: str = "safe runtime health") -> None:
    console.print(kv_table(title, h.lines()))


def print_ab(r: ABResult) -> None:
    conf = f"{r.confidence:.0%}"
    t = Table(title=f"A/B \\[{r.task}], level {r.level:g}: residual switched by episode on {r.robots} robots",
              title_justify="left")
    for col in ("arm", "episodes", "success", f"{conf} interval", "collision", "return"):
        t.add_column(col, justify="left" if col == "arm" else "right")
    for arm in (r.on, r.off):
        d = arm.as_dict(r.confidence)
        lo, hi = d["success_interval"]
        t.add_row(arm.label, f"{arm.episodes}", f"{arm.success_rate:.1%}", f"[{lo:.1%}, {hi:.1%}]",
                  f"{arm.collision_rate:.1%}", f"{d['mean_return']:+.3f}")
    console.print(t)
    lo, hi = r.difference_interval
    console.print(f"on - off: {r.difference * 100:+.1f} points, {conf} interval [{lo * 100:+.1f}, {hi * 100:+.1f}] "
                  "(independent arms, Newcombe)")
    print_health(r.health, "safe runtime over the A/B run (step latency without the base, which ran batched)")
