"""Run logs: ``<project>/.cadenza-env/<run-id>.log.jsonl``, one JSON object per line.

Record types, in file order (schema ``cadenza.runlog/1``, documented in ``docs/runlog.md``)::

    header          once, first line
    episode_start   per mission: seed, goal, the site layout
    step            per action step
    episode_end     per mission: success, steps, return, why it ended
    run_end         once, last line (absent when the run crashed)
    aborted         instead of run_end when the run stopped on an error

The writer opens the file in exclusive-create mode, writes each record as one line and flushes it at
once, so a crash keeps every finished step and nothing is ever rewritten. The reader names the file
and line of any malformed line, or skips and counts such lines when asked to.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from cadenza.errors import CadenzaError
from cadenza.utils.io import json_default

SCHEMA = "cadenza.runlog/1"
LOG_SUFFIX = ".log.jsonl"

# required keys per record type (extra keys are allowed: readers must ignore what they do not know)
REQUIRED: dict[str, tuple[str, ...]] = {
    "header": ("schema", "run_id", "time", "project", "config_hash", "cadenza_version", "policy", "controller",
               "seed", "task", "system_prompt", "actions"),
    "episode_start": ("episode", "seed", "goal", "site"),
    "step": ("episode", "step", "goal", "prompt", "action", "observation", "observation_text", "history",
             "reward", "collision", "done"),
    "episode_end": ("episode", "success", "steps", "return", "reason"),
    "run_end": ("episodes", "successes"),
    "aborted": ("error",),
}


class RunLogError(CadenzaError):
    """A run log that cannot be read (the message names the file and line)."""

    exit_code = 2


def new_run_id(now: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-mmm-<hex>``: names sort in start order to the millisecond (two runs in one second
    still list oldest first); the random tail keeps concurrent runs apart."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond // 1000:03d}-" + secrets.token_hex(3)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunLogWriter:
    """Append-only, line-flushed JSONL writer; the file must not exist yet."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._f: TextIO | None = open(self.path, "x", encoding="utf-8", buffering=1)  # noqa: SIM115
        except FileExistsError:
            raise RunLogError(f"{self.path}: already exists; run logs are never overwritten") from None

    def write(self, record: dict[str, Any], sync: bool = False) -> None:
        if self._f is None:
            raise RunLogError(f"{self.path}: writer already closed")
        line = json.dumps(record, separators=(",", ":"), default=json_default, allow_nan=False)
        self._f.write(line + "\n")
        self._f.flush()
        if sync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None

    def __enter__(self) -> RunLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RunLog:
    """A parsed run log."""

    path: Path
    header: dict[str, Any]
    records: list[dict[str, Any]]  # every record after the header, in order
    bad_lines: list[int] = field(default_factory=list)  # 1-based numbers of skipped lines

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == kind]

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.of_type("step")

    def episodes(self) -> dict[int, dict[str, Any]]:
        """``episode -> {"start": rec|None, "steps": [...], "end": rec|None}`` in order of appearance."""
        out: dict[int, dict[str, Any]] = {}
        for r in self.records:
            if r["type"] in ("episode_start", "step", "episode_end"):
                e = out.setdefault(int(r["episode"]), {"start": None, "steps": [], "end": None})
                if r["type"] == "step":
                    e["steps"].append(r)
                else:
                    e["start" if r["type"] == "episode_start" else "end"] = r
        return out

    @property
    def complete(self) -> bool:
        return bool(self.records) and self.records[-1]["type"] == "run_end"


def _check(rec: Any, where: str) -> str | None:
    """Why ``rec`` is not a valid record, or ``None``."""
    if not isinstance(rec, dict):
        return f"{where}: expected a JSON object, got {type(rec).__name__}"
    kind = rec.get("type")
    if kind not in REQUIRED:
        return f"{where}: unknown record type {kind!r}; expected one of {', '.join(REQUIRED)}"
    missing = [k for k in REQUIRED[kind] if k not in rec]
    if missing:
        return f"{where}: {kind} record lacks {', '.join(missing)}"
    if kind == "step" and not (isinstance(rec["action"], dict) and "name" in rec["action"]):
        return f"{where}: step record's action must be an object with a name"
    return None


def read_log(path: str | Path, skip_bad_lines: bool = False) -> RunLog:
    """Parse a run log; a malformed line raises :class:`RunLogError` naming ``path:line``."""
    path = Path(path)
    if not path.is_file():
        raise RunLogError(f"{path}: no such run log")
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    bad: list[int] = []
    with open(path, encoding="utf-8", errors="strict") as f:
        lineno = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise RunLogError(f"{path}:{lineno + 1}: not UTF-8 text ({e.reason})") from None
            if not line:
                break
            lineno += 1
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                why = "truncated line" if not line.endswith("\n") else "malformed JSON"
                problem: str | None = f"{where}: {why} ({e.msg}, column {e.colno})"
            else:
                problem = _check(rec, where)
                if problem is None and rec["type"] == "header":
                    if header is not None:
                        problem = f"{where}: a second header record (one run per log file)"
                    elif rec["schema"] != SCHEMA:
                        raise RunLogError(f"{where}: unsupported schema {rec['schema']!r}; this cadenza reads {SCHEMA}")
                elif problem is None and header is None:
                    problem = f"{where}: {rec['type']} record before the header"
            if problem is not None:
                if not skip_bad_lines:
                    raise RunLogError(problem + " (use --skip-bad-lines to skip such lines)")
                bad.append(lineno)
                continue
            if rec["type"] == "header":
                header = rec
            else:
                records.append(rec)
    if header is None:
        raise RunLogError(f"{path}: no header record; is this a log written by `cadenza env run`?")
    return RunLog(path, header, records, bad)
