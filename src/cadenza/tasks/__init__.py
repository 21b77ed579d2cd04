"""The task seam: batched environments with the Gymnasium vector API."""

from cadenza.tasks.interface import Task, TaskSpec

__all__ = ["Task", "TaskSpec"]
