"""Shared CLI pieces: the console, option types and checks, the project lock, verdict exit codes."""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from cadenza.errors import NotBuiltError

if TYPE_CHECKING:
    from cadenza.project.config import Project

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Exit codes a CI pipeline can gate on (docs/config.md, "Errors and exit codes").
EXIT_DEPLOY, EXIT_ERROR, EXIT_USAGE, EXIT_BLOCK, EXIT_NEEDS_DATA = 0, 1, 2, 3, 4
VERDICT_EXIT = {"DEPLOY": EXIT_DEPLOY, "BLOCK": EXIT_BLOCK, "NEEDS_DATA": EXIT_NEEDS_DATA}



def directory_arg(value: Any) -> Path:
    """Parser of a directory argument: an empty one (an unset shell variable) never means the current directory."""
    if not str(value).strip():
        raise ValueError("expected a directory, got an empty value (use . for the current directory)")
    return Path(value)


ProjectArg = Annotated[Path, typer.Argument(parser=directory_arg, help="Project directory (holds cadenza.toml).",
                                            show_default=False)]
RealOpt = Annotated[bool, typer.Option("--real", help="Run on the real simulator (MuJoCo) named in [task.real].")]


def not_built(what: str, issue: str) -> None:
    raise NotBuiltError(f"{what} is not built yet (tracked in the [{issue}] issue)")


def kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, str(v))
    return t


class DefaultCommandGroup(TyperGroup):
    """A group that runs ``default_command`` when its first argument is not a sub-command.

    ``cadenza env distill PROJECT`` runs the default (distill) while ``cadenza env distill eval
    PROJECT`` runs ``eval``.
    """

    default_command = "build"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        cmd = self.commands.get(self.default_command)
        if cmd is None:
            return
        with type(ctx)(cmd, info_name=ctx.info_name, parent=ctx.parent) as sub:  # typer may vendor click
            formatter.write_paragraph()
            formatter.write_text(f"Running `{ctx.command_path} PROJECT [OPTIONS]` (no sub-command):")
            cmd.format_help_text(sub, formatter)
            cmd.format_options(sub, formatter)


# ---------------------------------------------------------------------------------------------- flag checks
# Option callbacks: a bad value stops the command at parse time, before any work, with one line
# `error: --flag: expected ..., got ...` and exit code 2 (cadenza.cli.main formats click's errors).
def _describe(kind: str, ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    parts = [f"{op} {v:g}" if isinstance(v, float) else f"{op} {v:,}"
             for op, v in ((">=", ge), (">", gt), ("<=", le), ("<", lt)) if v is not None]
    return f"{kind} {' and '.join(parts)}".strip()


def number_check(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
                 lt: float | None = None) -> Callable[[Any], Any]:
    """A typer option callback that refuses NaN, infinity and values outside the given bounds."""

    def check(value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        kind = "an integer" if isinstance(value, int) else "a finite number"
        ok = not (isinstance(value, float) and not math.isfinite(value))
        ok = ok and (ge is None or value >= ge) and (gt is None or value > gt)
        ok = ok and (le is None or value <= le) and (lt is None or value < lt)
        if not ok:
            raise typer.BadParameter(f"expected {_describe(kind, ge, gt, le, lt)}, got {value!r}")
        return value

    return check


SEED_CHECK = number_check(ge=0, lt=1_000_000)  # = project.config.SEED_LIMIT (held-out seeds start at 1,000,003)
STEPS_CHECK = number_check(ge=1_000, le=10**12)
EPISODES_CHECK = number_check(ge=1, le=10_000_000)


def max_episodes_opt(default: str) -> Any:
    """The ``--max-episodes`` option of a sequential scorecard; ``default`` names its config key and value."""
    return Annotated[int | None, typer.Option(
        "--max-episodes", callback=EPISODES_CHECK, show_default=False,
        help="Most episodes the sequential scorecard may draw per policy before it answers NEEDS_DATA; equal to "
             f"--episodes for a single fixed-size look. [default: {default}]")]


MaxEpisodesOpt = max_episodes_opt("governance.max_eval_episodes, 3000")
StudentMaxEpisodesOpt = max_episodes_opt("governance.max_student_eval_episodes, 10000")
HeldoutBlockOpt = Annotated[int | None, typer.Option(
    "--seed", callback=number_check(ge=0, lt=40), show_default=False,
    help="Held-out seed block to score on, 0-39 (block 0 is the first scorecard: train's, or distill's preview; "
         "each later eval takes the next; `cadenza env history` lists the blocks each version used). Reusing a "
         "block replays its episodes on purpose. [default: the first block this version has not used]")]
VERSION = re.compile(r"v\d{4,}")


def choice_check(*choices: str) -> Callable[[Any], Any]:
    """A callback for a string option with a fixed set of values (the help keeps its compact layout)."""

    def check(value: Any) -> Any:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"expected one of {', '.join(repr(c) for c in choices)}, got "
                                     f"{_short(str(value))!r}")
        return value

    return check


DeviceOpt = Annotated[str, typer.Option("--device", callback=choice_check("auto", "cuda", "mps", "cpu"),
                                        help="Torch device: auto (cuda -> mps -> cpu), cuda, mps or cpu.")]


BackendOpt = Annotated[str | None, typer.Option("--backend", callback=choice_check("local", "ray"),
                                                help="Where the parallel work runs: local (processes on this "
                                                     "machine) or ray (Ray tasks; needs the ray extra). [default: "
                                                     "scale.backend in cadenza.toml, local]", show_default=False)]
RayAddressOpt = Annotated[str | None, typer.Option("--ray-address",
                                                   help="With --backend ray: join the cluster at HOST:PORT, or "
                                                        "'auto' (the one `ray start --head` runs here); empty starts "
                                                        "a local Ray instance for the command. [default: "
                                                        "scale.ray_address in cadenza.toml]", show_default=False)]


TrackOpt = Annotated[str | None, typer.Option(
    "--track", callback=choice_check("tensorboard", "mlflow", "none"),
    help="Log parameters, per-round metrics and artefacts: tensorboard (event files in PROJECT/runs/), mlflow (the "
         "server at [tracking] uri) or none. [default: tracking.track in cadenza.toml, tensorboard]",
    show_default=False)]

@contextmanager
def command_tracker(project: Any, command: str, track: str | None, out: Console) -> Iterator[Any]:
    """The command's tracker (:func:`cadenza.tracking.open_tracker`), announced on ``out`` with its notes;
    it ends the tracked run with the command's outcome."""
    from cadenza.tracking import open_tracker

    with open_tracker(project, command, track, warn=lambda w: out.print(f"[yellow]{w}[/yellow]")) as tr:
        if tr.where:
            out.print(f"tracking: {tr.kind} {tr.where}", soft_wrap=True, markup=False)
        yield tr


RolloutWorkersOpt = Annotated[int | None, typer.Option(
    "--rollout-workers", callback=number_check(ge=1, le=1024),
    help="Collect each round's rollout in this many shards of the parallel envs, each a single-threaded process: "
         "spawned here with --backend local, a Ray actor with --backend ray; the same seed and count give the same "
         "numbers on both. 1 collects in one piece, in this process. [default: scale.rollout_workers in "
         "cadenza.toml, 1]", show_default=False)]


def text_check(*, max_len: int = 2000, allow_empty: bool = False) -> Callable[[Any], Any]:
    """A callback for free text: not empty (unless allowed), valid UTF-8, at most ``max_len`` characters."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        if not allow_empty and not str(value).strip():
            raise typer.BadParameter("expected some text, got an empty value")
        try:
            str(value).encode("utf-8")
        except UnicodeEncodeError:
            raise typer.BadParameter("expected UTF-8 text, got bytes that are not UTF-8") from None
        if len(value) > max_len:
            raise typer.BadParameter(f"expected at most {max_len} characters, got {len(value)}")
        return value

    return check


def version_check(value: str | None) -> str | None:
    """``--version`` / ``--to``: a registry version name such as v0003."""
    if value is not None and not VERSION.fullmatch(value):
        raise typer.BadParameter(f"expected a registry version such as v0001, got {_short(value)!r}")
    return value


def existing_file(value: Any) -> Any:
    """A path option or argument naming a file that exists (checked before any work)."""
    for p in value if isinstance(value, (list, tuple)) else [value]:
        if p is None:
            continue
        try:
            ok, exists = Path(p).is_file(), Path(p).exists()
        except (OSError, ValueError) as e:
            raise typer.BadParameter(f"cannot read {_short(str(p))!r} ({getattr(e, 'strerror', None) or e})") from None
        if not ok:
            raise typer.BadParameter(f"{_short(str(p))}: {'not a file' if exists else 'no such file'}")
    return value


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# ---------------------------------------------------------------------------------------------- lock
F = TypeVar("F", bound=Callable[..., Any])
Check = Callable[["Project", dict[str, Any]], None]


def _params(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    return dict(inspect.signature(fn).bind(*args, **kwargs).arguments) if args else dict(kwargs)


def _preflight(check: Check | None, params: dict[str, Any], project_param: str) -> None:
    if check is None:
        return
    from cadenza.project.config import load_project

    check(load_project(params[project_param]), params)


def checked(check: Check, *, project_param: str = "project") -> Callable[[F], F]:
    """Run ``check(project, params)`` before the command (read-only commands): one line on a problem."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _preflight(check, _params(fn, args, kwargs), project_param)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco


def locked(command: str, *, check: Check | None = None, project_param: str = "project",
           when: Callable[[dict[str, Any]], bool] | None = None) -> Callable[[F], F]:
    """A command that writes the project: checks first, then holds ``<project>/.cadenza/lock`` while it runs.

    ``check(project, params)`` runs before the lock is taken (nothing is written when it refuses);
    ``when(params)`` can say the lock is not needed (e.g. an export that writes outside the project).
    A second command on a locked project is refused with one line naming the holder (exit code 1).
    """

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            params = _params(fn, args, kwargs)
            _preflight(check, params, project_param)
            root = Path(params[project_param])
            try:
                is_project = (root / "cadenza.toml").is_file()
            except (OSError, ValueError):
                is_project = False
            if not is_project or (when is not None and not when(params)):
                return fn(*args, **kwargs)  # nothing to lock: the command reports the problem itself
            from cadenza.project.lock import ProjectLock

            with ProjectLock(root, f"cadenza {command}") as lock:
                if lock.note:
                    err_console.print(f"note: {lock.note}", markup=False, soft_wrap=True)
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco
