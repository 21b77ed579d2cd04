"""Scale-out backends: where independent pieces of work (the bench's training runs) execute.

* ``local`` (the default): processes on this machine (``concurrent.futures``), as before;
* ``ray``: Ray tasks on a local Ray instance started for the command, or on an existing cluster
  (``--ray-address ADDR`` / ``auto``). See ``docs/scale.md``.

:mod:`cadenza.scale.backend` holds the settings and their resolution; :mod:`cadenza.scale.ray_map` runs
a function over items as Ray tasks, streaming results back and re-running work a lost worker held.
"""

from cadenza.scale.backend import BACKENDS, ScaleSettings, resolve_scale

__all__ = ["BACKENDS", "ScaleSettings", "resolve_scale"]
