"""The mission layer: a site to search, skills run by the low-level controller, planners that turn a
goal into action steps, run logs, replays and the VLA fine-tuning export.

``cadenza env run`` is :func:`cadenza.mission.runner.run_missions`; ``cadenza env finetune`` is
:func:`cadenza.mission.finetune.export`. The run-log schema is in ``docs/runlog.md``.
"""

from cadenza.mission.actions import ActionError, ActionStep, Vocabulary
from cadenza.mission.planners import Planner, PlannerInput, make_planner, planner_names, register_planner
from cadenza.mission.runlog import RunLog, RunLogError, read_log
from cadenza.mission.runner import RunOptions, RunResult, run_missions

__all__ = [
    "ActionError",
    "ActionStep",
    "Planner",
    "PlannerInput",
    "RunLog",
    "RunLogError",
    "RunOptions",
    "RunResult",
    "Vocabulary",
    "make_planner",
    "planner_names",
    "read_log",
    "register_planner",
    "run_missions",
]
