"""The LoRA head as a mission planner (``env run --policy lora``) and loading it from the registry.

At every decision the plan is decoded again from the current observation and the step just taken,
and its first step is returned (closed loop; greedy decoding is causal, so the first step is decoded
alone); the step, its probability and the goal's similarity go into the step's ``raw`` text, which
the run log keeps. A goal the head abstains on raises
:class:`~cadenza.mission.objectives.PlannerStop`: the mission ends in a logged safe stop.
"""

from __future__ import annotations

from typing import Any

from cadenza.errors import ArtefactError, CadenzaError
from cadenza.governance.registry import open_registry
from cadenza.lora.head import ADAPTER_FILE, META_FILE, ActionHead, load_head
from cadenza.mission.actions import ActionStep
from cadenza.mission.objectives import PlannerStop
from cadenza.mission.planners import PlannerInput, register_planner
from cadenza.project.config import Project

KIND = "lora"


class LoraPlanner:
    name = "lora"

    def __init__(self, head: ActionHead, version: str | None = None) -> None:
        self.head, self.version = head, version

    def reset(self, goal: str, seed: int) -> None:
        pass

    def plan(self, inp: PlannerInput) -> ActionStep:
        # greedy decoding is causal: the first step of the whole plan is the first step decoded alone
        d = self.head.decode(inp.goal, inp.observation, inp.history[-1] if inp.history else None, max_len=1)
        if d.abstained:
            raise PlannerStop(f"the LoRA head abstains on {inp.goal!r}: similarity {d.similarity:.2f} to the nearest "
                              f"trained goal ({d.nearest!r}) is below its threshold {d.threshold:.2f}")
        first = d.steps[0]
        return ActionStep(first.name, dict(first.params),
                          raw=f"lora {self.version or ''}: {first.text()} (p {d.probs[0]:.2f}, goal similarity "
                              f"{d.similarity:.2f})")


def load_version(project: Project, version: str, encoder: Any = None) -> ActionHead:
    """A registered head, its files checked against the registry's hashes first."""
    from cadenza.lora.encoder import load_encoder

    reg = open_registry(project)
    adapter = reg.path(KIND, version, ADAPTER_FILE)
    meta = reg.path(KIND, version, META_FILE)
    return load_head(adapter, meta, encoder if encoder is not None else load_encoder(project.root))


def promoted_version(project: Project) -> str:
    v = open_registry(project).baseline(KIND)
    if v is None:
        raise CadenzaError(f"{project.root} has no promoted LoRA head; run `cadenza env lora finetune {project.root} "
                           "--gate` (or `env lora eval --promote`) first")
    return v


def load_promoted(project: Project) -> tuple[ActionHead, str]:
    v = promoted_version(project)
    return load_version(project, v), v


def make_lora_planner(project: Project, vocabulary: Any) -> LoraPlanner:
    """The planner factory for ``--policy lora`` (:func:`cadenza.mission.planners.register_planner`)."""
    head, version = load_promoted(project)
    if list(head.codec.actions) != list(vocabulary.names):
        raise ArtefactError(f"lora {version} was trained on the actions {', '.join(head.codec.actions)}; the project "
                            f"now has {', '.join(vocabulary.names)}; fine-tune again")
    return LoraPlanner(head, version)


register_planner("lora", make_lora_planner)
