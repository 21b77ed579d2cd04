"""Checkpoints and resume of a governed training: the run directory, the last round's state, the
progress file and the best validation round's weights.

Every round is checkpointed (``checkpoint.pt``, ``progress.json``), so Ctrl-C loses at most one round;
a re-run with the same seed and budget resumes from the progress file (``--fresh`` starts over).
Weights are read with ``weights_only=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cadenza.errors import ArtefactError
from cadenza.project.config import Project
from cadenza.utils.io import atomic_write_json, atomic_write_with


def run_dir(project: Project, real: bool) -> Path:
    return project.residual_dir / ("run-real" if real else "run")


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ArtefactError(f"{path}: unreadable checkpoint ({type(e).__name__}); re-run with --fresh") from None


def resume(prog_path: Path, ckpt_path: Path, *, seed: int, budget: int, fresh: bool
           ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The rounds done so far and the last checkpoint, when a run with this seed and budget was interrupted."""
    history: list[dict[str, Any]] = []
    ckpt = None
    if not fresh and prog_path.is_file():
        prog = json.loads(prog_path.read_text())
        if prog.get("status") == "running" and prog.get("seed") == seed and prog.get("budget") == budget:
            ckpt = load_checkpoint(ckpt_path)
            if ckpt is not None:
                history = prog["history"]
    return history, ckpt


def save_best(best_path: Path, state: dict[str, Any]) -> None:
    atomic_write_with(best_path, lambda tmp, sd=state: torch.save(sd, tmp))


def save_round(ckpt_path: Path, prog_path: Path, state: dict[str, Any], *, seed: int, budget: int,
               history: list[dict[str, Any]], plan: dict[str, Any]) -> None:
    """After every round: the trainer's state, then the progress file that points a re-run at it."""
    atomic_write_with(ckpt_path, lambda tmp: torch.save(state, tmp))
    atomic_write_json(prog_path, {"status": "running", "seed": seed, "budget": budget, "history": history,
                                  "plan": plan})


def mark_done(prog_path: Path, *, seed: int, budget: int, history: list[dict[str, Any]], plan: dict[str, Any],
              version: str) -> None:
    atomic_write_json(prog_path, {"status": "done", "seed": seed, "budget": budget, "history": history,
                                  "plan": plan, "version": version})
