"""Experiment tracking: a command's parameters, per-round metrics and artefacts, to TensorBoard or MLflow.

``--track tensorboard|mlflow|none`` (default ``[tracking] track`` in cadenza.toml, ``tensorboard``):

* ``tensorboard``: event files under ``<project>/runs/<command>-<YYYYmmdd-HHMMSS>/`` (``tensorboard
  --logdir <project>/runs``): every metric as a scalar against env steps (or the round), the parameters
  as a text table; artefacts stay in the project, where the command writes them;
* ``mlflow``: one experiment per project (``[tracking] experiment``, default the project's name) on
  the server at ``[tracking] uri`` (or ``MLFLOW_TRACKING_URI``), one run per command, named after it:
  parameters (flattened, ``plan.hyperparameters.gamma``), metrics with their step, artefacts (report,
  curves), the verdict as a tag, and the run's end status (FINISHED, FAILED, KILLED on Ctrl-C);
* ``none``: nothing.

The contract every tracker keeps (:class:`Tracker`): ``params(dict)``, ``metrics(dict, step)``
(non-numeric and non-finite values are skipped), ``artifact(path)``, ``tag(key, value)``, and use as a
context manager that ends the run. A tracker that cannot reach its backend when it starts is a
one-line error before any work; one that fails mid-run warns once and stops tracking, so a training
is never lost to its tracking server.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cadenza.errors import CadenzaError, UsageError

TRACKS = ("tensorboard", "mlflow", "none")
TRACK_EXTRA = 'pip install -e ".[track]"'
RUNS_DIR = "runs"
PARAM_MAX = 500  # characters kept of one parameter's value


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and other values as they are)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def numeric(d: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a flat dict (bools as 0/1)."""
    out = {}
    for k, v in flatten(d).items():
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = float(v)
    return out


class Tracker:
    """No tracking (``--track none``) and the base of the others."""

    kind = "none"
    where = ""

    def params(self, params: dict[str, Any]) -> None: ...

    def metrics(self, metrics: dict[str, Any], step: int) -> None: ...

    def artifact(self, path: Path) -> None: ...

    def tag(self, key: str, value: str) -> None: ...

    def end(self, status: str) -> None: ...

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # a command's own exit (typer.Exit / SystemExit with its verdict's code) finished the run
        done = exc_type is None or issubclass(exc_type, SystemExit) or exc_type.__name__ == "Exit"
        self.end("FINISHED" if done else "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")


class _Guarded(Tracker):
    """Calls the backend; the first failure mid-run warns once (through ``warn``) and turns tracking off."""

    def __init__(self, warn: Callable[[str], None] | None) -> None:
        self._warn = warn
        self._off = False

    def _call(self, fn: Callable[[], Any]) -> None:
        if self._off:
            return
        try:
            fn()
        except Exception as e:
            self._off = True
            if self._warn is not None:
                self._warn(f"tracking ({self.kind}) stopped: {type(e).__name__}: {str(e).splitlines()[0][:200]}; "
                           "the command goes on")


class TensorBoardTracker(_Guarded):
    kind = "tensorboard"

    def __init__(self, logdir: Path, warn: Callable[[str], None] | None = None) -> None:
        super().__init__(warn)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise CadenzaError(f"--track tensorboard needs the tensorboard package: {TRACK_EXTRA}") from None
        self.where = str(logdir)
        self.writer = SummaryWriter(log_dir=str(logdir))

    def params(self, params: dict[str, Any]) -> None:
        rows = "\n".join(f"| {k} | {str(v)[:PARAM_MAX]} |" for k, v in sorted(flatten(params).items()))
        self._call(lambda: self.writer.add_text("params", "| parameter | value |\n|---|---|\n" + rows, 0))

    def metrics(self, metrics: dict[str, Any], step: int) -> None:
        def write() -> None:
            for k, v in numeric(metrics).items():
                self.writer.add_scalar(k, v, step)
        self._call(write)

    def tag(self, key: str, value: str) -> None:
        self._call(lambda: self.writer.add_text(key, value, 0))

    def end(self, status: str) -> None:
        self._call(lambda: self.writer.add_text("status", status, 0))
        self._call(self.writer.close)


class MlflowTracker(_Guarded):
    kind = "mlflow"

    def __init__(self, uri: str, experiment: str, run_name: str, warn: Callable[[str], None] | None = None) -> None:
        super().__init__(warn)
        # fail fast: the client's default is 7 retries with backoff, minutes before an error
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise CadenzaError(f"--track mlflow needs mlflow: {TRACK_EXTRA}") from None
        self.client = MlflowClient(tracking_uri=uri)
        try:
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(experiment)
            self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        except Exception as e:
            raise CadenzaError(f"--track mlflow: cannot reach the tracking server at {uri} ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:160]}); start it, or use --track tensorboard|none") \
                from None
        self.where = f"{uri} experiment {experiment!r} run {self.run_id}"

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], str(v)[:PARAM_MAX]) for k, v in sorted(flatten(params).items())]

        def write() -> None:
            for i in range(0, len(items), 100):  # the server takes at most 100 parameters per batch
                self.client.log_batch(self.run_id, params=items[i:i + 100])
        self._call(write)

    def metrics(self, metrics: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k[:250], v, now, step) for k, v in numeric(metrics).items()]
        self._call(lambda: self.client.log_batch(self.run_id, metrics=items) if items else None)

    def artifact(self, path: Path) -> None:
        if Path(path).is_file():
            self._call(lambda: self.client.log_artifact(self.run_id, str(path)))

    def tag(self, key: str, value: str) -> None:
        self._call(lambda: self.client.set_tag(self.run_id, key, value))

    def end(self, status: str) -> None:
        self._call(lambda: self.client.set_terminated(self.run_id, status))


def resolve_track(section: Any, track: str | None) -> str:
    """``--track`` over ``[tracking] track``; one line when the backend's package is missing."""
    kind = track if track is not None else section.track
    if kind not in TRACKS:
        raise UsageError(f"--track must be one of {', '.join(TRACKS)}, got {kind!r}")
    if kind == "mlflow" and not (section.uri or os.environ.get("MLFLOW_TRACKING_URI")):
        raise UsageError("--track mlflow: no server given; set [tracking] uri in cadenza.toml (e.g. "
                         "http://127.0.0.1:5000) or MLFLOW_TRACKING_URI")
    return kind


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def open_tracker(project: Any, command: str, track: str | None = None,
                 warn: Callable[[str], None] | None = None) -> Tracker:
    """The tracker for one command on ``project`` (``command`` names the run: ``train``, ``bench``, ...).
    The configured default (``tensorboard``) without the package installed gives no tracking and a note
    through ``warn``; asking for it with ``--track`` gives a one-line error."""
    section = project.config.tracking
    kind = resolve_track(section, track)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if kind == "tensorboard":
        if track is None and not tensorboard_available():
            if warn is not None:
                warn(f"tracking off: TensorBoard is not installed ({TRACK_EXTRA}; or --track none)")
            return Tracker()
        return TensorBoardTracker(project.root / RUNS_DIR / f"{command}-{stamp}", warn)
    if kind == "mlflow":
        uri = section.uri or os.environ["MLFLOW_TRACKING_URI"]
        return MlflowTracker(uri, section.experiment or project.name, f"{command}-{stamp}", warn)
    return Tracker()
