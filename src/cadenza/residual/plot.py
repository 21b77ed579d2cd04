"""The learning curve of a governed training (``residual/learning_curve.png``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cadenza.governance.governor import Plan
from cadenza.utils.io import atomic_write_with


def plot_curve(history: list[dict[str, Any]], plan: Plan, threshold: float, path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.array([h["env_steps_total"] for h in history])
    sr = np.array([h["success_rate"] if h["episodes"] else math.nan for h in history])
    cr = np.array([h["collisions"] / h["episodes"] if h["episodes"] else math.nan for h in history])
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    ax.plot(x, sr, "o-", label="success (training rollouts)", color="tab:blue")
    ax.plot(x, cr, "s--", label="collision", color="tab:red", alpha=0.7)
    ax.axhline(threshold, color="gray", ls=":", label=f"deploy threshold {threshold:.0%}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("rate per round")
    ax.set_ylim(0, 1.02)
    ax2 = ax.twinx()
    ax2.step(x, [h["level"] for h in history], where="post", color="tab:green", alpha=0.5, label="perturbation level")
    ax2.set_ylabel("perturbation level", color="tab:green")
    ax2.set_ylim(0, 1.05)
    ax.set_title(f"governed residual training [{label}]")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
