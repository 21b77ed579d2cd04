"""Hostile-input battery: every command and flag of ``cadenza``, every key of ``cadenza.toml``.

Each hostile value (zero, negatives, NaN, inf, huge, empty, wrong type, non-UTF-8, paths that do not
exist or are directories, very long strings) must be refused before any work starts: exit code 1 or
2, exactly one line on stderr naming the flag or key, nothing on stdout, no project file created or
changed. The CLI runs in-process (``cadenza.cli.main.main`` with ``sys.argv`` patched); taking the
project lock (the first thing a writing command does once its checks pass) raises, so a value that
slips through fails the test at once instead of starting a training. A few cases run through the
real console script too, to prove there is no traceback there and that torch is never imported.

``BATTERY`` must list every command and flag of the walked command tree: a new command or flag
without hostile cases fails ``test_battery_covers_every_command_and_flag``. Hypothesis runs
derandomized with a bounded number of examples (the whole file runs in well under 2 minutes on 2
cores).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from cadenza.cli.main import app, main
from cadenza.project.config import ProjectConfig
from tests.conftest import make_project

NON_UTF8 = b"\xff\xfe".decode("utf-8", "surrogateescape")  # what sys.argv holds for those bytes
LONG = "x" * 5000
LONG_PATH = "d/" * 3000  # longer than PATH_MAX: the OS refuses to look at it
PRINTABLE = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))

BATTERY_SETTINGS = settings(max_examples=12, derandomize=True, deadline=None, database=None,
                            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


class WorkStarted(BaseException):  # not an Exception: the CLI must not catch it
    """Raised where a writing command takes the project lock, i.e. where its work would begin."""


# ---------------------------------------------------------------------------------------------- places
@dataclass
class Places:
    """The files and directories the battery points commands at (one set per module)."""

    base: Path
    project: Path
    empty_dir: Path
    a_file: Path
    log: Path
    out_dir: Path
    fresh: Path

    def missing(self, name: str = "nope") -> str:
        return str(self.base / "missing" / name)


# ---------------------------------------------------------------------------------------------- kinds
@dataclass
class Kind:
    """How to attack one parameter: hostile values, and a valid value when the parameter is required."""

    hostile: Callable[[Places], st.SearchStrategy[str]]
    valid: Callable[[Places], str] | None = None
    extra_needles: tuple[str, ...] = ()
    flag: bool = False  # a boolean flag: attacked as --flag=VALUE

    def needles(self, name: str, value: str) -> list[str]:
        got = [name, *self.extra_needles]
        if not name.startswith("-"):  # an argument: its value may be what the line names
            got += [value[:30], str(Path(value))[:30]]
        return [n for n in got if n.strip()]


def _specials(*values: str) -> st.SearchStrategy[str]:
    return st.sampled_from(values)


def INT(lo: int, hi: int) -> Kind:
    return Kind(lambda _: st.one_of(
        st.integers(max_value=lo - 1).map(str), st.integers(min_value=hi + 1).map(str),
        _specials("nan", "inf", "-inf", "1.5", "", " ", "abc", "0x10", "1e3", "9" * 400, NON_UTF8, LONG)))


def FLOAT(lo: float, hi: float, *, lo_open: bool = False) -> Kind:
    def hostile(_: Places) -> st.SearchStrategy[str]:
        below = st.floats(max_value=lo, exclude_max=not lo_open, allow_nan=False, allow_infinity=False)
        above = st.floats(min_value=hi, exclude_min=True, allow_nan=False, allow_infinity=False)
        return st.one_of(below.map(repr), above.map(repr),
                         _specials("nan", "NaN", "inf", "-inf", "infinity", "1e999", "-1e999", "", "abc", NON_UTF8,
                                   LONG))
    return Kind(hostile)


def CHOICE(*values: str, valid: str | None = None) -> Kind:
    return Kind(lambda _: st.one_of(st.text(PRINTABLE, max_size=20).filter(lambda s: s not in values),
                                    _specials("", NON_UTF8, LONG, values[0].upper() + "!")),
                valid=(lambda _: valid) if valid else None)


def TEXT(valid: str | None = None) -> Kind:
    return Kind(lambda _: st.one_of(st.text(" \t", max_size=4), _specials(NON_UTF8, "go " + NON_UTF8, "g" * 2001)),
                valid=(lambda _: valid) if valid else None)


def FILE(valid: Callable[[Places], str] | None = None) -> Kind:
    def hostile(p: Places) -> st.SearchStrategy[str]:
        return st.one_of(st.text(PRINTABLE.filter(lambda c: c not in "/\\"), min_size=1, max_size=30).map(p.missing),
                         _specials(str(p.empty_dir), str(p.base), "", LONG_PATH, p.missing(NON_UTF8)))
    return Kind(hostile, valid=valid)


def VERSION() -> Kind:
    return Kind(lambda _: st.one_of(st.text(PRINTABLE, max_size=12).filter(lambda s: not _is_version(s)),
                                    _specials("", "v1", "V0001", "../v0001", "v0001/..", "v0001 ", NON_UTF8, LONG)))


def _is_version(s: str) -> bool:
    return len(s) >= 5 and s[0] == "v" and s[1:].isdigit() and s[1:].isascii()


BOOL = Kind(lambda _: _specials("yes", "1", "", NON_UTF8), flag=True)


def _project_hostile(p: Places) -> st.SearchStrategy[str]:
    return st.one_of(st.text(PRINTABLE.filter(lambda c: c not in "/\\"), min_size=1, max_size=30).map(p.missing),
                     _specials("", " ", str(p.empty_dir), str(p.a_file), str(p.project / "cadenza.toml"), LONG_PATH,
                               p.missing(NON_UTF8)))


PROJECT = Kind(_project_hostile, valid=lambda p: str(p.project), extra_needles=("cadenza.toml",))
DIRECTORY = Kind(lambda p: _specials("", " ", str(p.a_file), str(p.project), LONG_PATH, str(p.base / "bad name!"),
                                     str(p.base / NON_UTF8)),
                 valid=lambda p: str(p.fresh), extra_needles=("cadenza.toml", "project.name"))
NAME = Kind(lambda _: st.one_of(st.text(PRINTABLE, max_size=20).filter(lambda s: not _valid_name(s)),
                                _specials("", " ", "bad name!", "-x", ".x", "a" * 101, NON_UTF8, "é")))
ARMS = Kind(lambda _: st.one_of(st.text("abcdefgh,", max_size=12),
                                _specials("", ",", "a2c", "full", "sb3,full", "residual,a2c", NON_UTF8, LONG)))
OUTPUT = Kind(lambda p: _specials(str(p.out_dir), str(p.base), "", LONG_PATH),
              valid=lambda p: str(p.out_dir / "records.jsonl"))
DEVICE = CHOICE("auto", "cuda", "mps", "cpu")


def _valid_name(s: str) -> bool:
    import re

    return len(s) <= 100 and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", s) is not None


EPISODES = INT(1, 10_000_000)
SEED = INT(0, 999_999)
STEPS = INT(1000, 10**12)
URL = Kind(lambda _: _specials("", " ", "ftp://host/v1", "http://", "api.groq.com", "http://a b", NON_UTF8, LONG))
ENV_NAME = Kind(lambda _: _specials("", " ", "1KEY", "GROQ-API-KEY", "A B", "$KEY", NON_UTF8, LONG))
LLM_FLAGS: dict[str, Kind] = {"--model": TEXT(), "--base-url": URL, "--timeout": FLOAT(0.0, 3600.0, lo_open=True),
                              "--retries": INT(0, 10), "--api-key-env": ENV_NAME, "--no-cache": BOOL}

BACKEND = CHOICE("local", "ray")
# every value is refused: a malformed address, or a well-formed one without --backend ray
RAY_ADDRESS = Kind(lambda _: _specials("host", "host:", "host:abc", "host:0", "host:99999", "ftp://h:1", "a b:1",
                                       "localhost:6379", "auto", NON_UTF8, LONG))
TRACK = CHOICE("tensorboard", "mlflow", "none")
SCALE_FLAGS = {"--backend": BACKEND, "--ray-address": RAY_ADDRESS, "--rollout-workers": INT(1, 1024), "--track": TRACK}

BATTERY: dict[str, dict[str, Kind]] = {
    "": {"--version": BOOL},
    "init": {"DIRECTORY": DIRECTORY, "--template": CHOICE("rescue-dog"), "--name": NAME, "--force": BOOL},
    "env residual init": {"PROJECT": PROJECT, "--hidden-dim": INT(4, 8192), "--alpha": FLOAT(0.0, 1.0, lo_open=True),
                          "--obs-dim": INT(1, 1_000_000), "--rate-limit": FLOAT(0.0, 2.0, lo_open=True),
                          "--no-gate": BOOL, "--device": DEVICE, "--real": BOOL},
    "env residual train": {"PROJECT": PROJECT, "--steps": STEPS, "--seed": SEED, "--device": DEVICE, "--real": BOOL,
                           "--fresh": BOOL, **SCALE_FLAGS},
    "env residual eval": {"PROJECT": PROJECT, "--promote": BOOL, "--episodes": EPISODES, "--version": VERSION(),
                          "--policy": FILE(), "--real": BOOL, "--seed": INT(0, 39), "--ab": BOOL,
                          "--max-episodes": EPISODES},
    "env residual bench": {"PROJECT": PROJECT, "--steps": STEPS, "--seeds": INT(1, 1000), "--arms": ARMS,
                           "--full-reward": CHOICE("sparse", "dense", "both"),
                           "--cost-per-gpu-hour": FLOAT(0.0, 1e6), "--cost-per-cpu-core-hour": FLOAT(0.0, 1e6),
                           "--eval-episodes": INT(1, 1_000_000), "--workers": INT(1, 1024), "--device": DEVICE,
                           "--real": BOOL, "--backend": BACKEND, "--ray-address": RAY_ADDRESS, "--track": TRACK},
    "env distill build": {"PROJECT": PROJECT, "--epochs": INT(1, 100_000), "--quantize": BOOL, "--device": DEVICE,
                          "--real": BOOL, "--teacher": CHOICE("residual", "base"), "--rounds": INT(1, 1000),
                          "--episodes": EPISODES, "--seed": SEED, **SCALE_FLAGS},
    "env distill eval": {"PROJECT": PROJECT, "--promote": BOOL, "--episodes": EPISODES, "--version": VERSION(),
                         "--real": BOOL, "--max-episodes": EPISODES, "--seed": INT(0, 39)},
    "env lora add": {"PROJECT": PROJECT, "GOAL": TEXT(valid="enter the debris field"),
                     "--steps": TEXT(valid="walk_forward 1.0"), "--image": FILE()},
    "env lora data": {"PROJECT": PROJECT, "--finetune": FILE()},
    "env lora finetune": {"PROJECT": PROJECT, "--epochs": INT(1, 100_000), "--lr": FLOAT(0.0, 10.0, lo_open=True),
                          "--rank": INT(1, 1024), "--gate": BOOL, "--seed": SEED, "--track": TRACK},
    "env lora eval": {"PROJECT": PROJECT, "--promote": BOOL},
    "env lora decode": {"PROJECT": PROJECT, "GOAL": TEXT(valid="enter the debris field")},
    "env run": {"PROJECT": PROJECT, "--headless": BOOL, "--policy": CHOICE("scripted", "lora", "llm"), "--goal": TEXT(),
                "--episodes": INT(1, 1_000_000), "--seed": SEED, "--perturb": FLOAT(0.0, 1.0),
                "--controller": CHOICE("residual", "student"), **LLM_FLAGS},
    "env finetune": {"PROJECT": PROJECT, "LOGS": FILE(valid=lambda p: str(p.log)), "--output": OUTPUT,
                     "--format": CHOICE("jsonl", "lerobot"), "--skip-bad-lines": BOOL},
    "env train": {"PROJECT": PROJECT, "--dry-run": BOOL, "--runs": INT(1, 100_000), "--offline": BOOL,
                  "--budget": INT(1, 10_000_000), "--policy": CHOICE("scripted", "llm"), "--screen": INT(1, 10_000),
                  "--validation": INT(1, 100_000), "--perturb": FLOAT(0.0, 1.0), **LLM_FLAGS},
    "env history": {"PROJECT": PROJECT, "--kind": CHOICE("residual", "student", "lora", "prompt")},
    "env rollback": {"PROJECT": PROJECT, "KIND": CHOICE("residual", "student", "lora", "prompt", valid="residual"),
                     "--to": VERSION()},
}


# ---------------------------------------------------------------------------------------------- the tree
def param_name(p: Any) -> str:
    if p.param_type_name == "argument":
        return p.name.upper()
    return max(p.opts, key=len)


def walk_commands() -> dict[str, list[Any]]:
    """Command path -> its parameters (no --help), for every command and every group with options."""
    found: dict[str, list[Any]] = {}

    def rec(cmd: Any, path: tuple[str, ...]) -> None:
        params = [p for p in cmd.params if "--help" not in getattr(p, "opts", ())]
        subs = getattr(cmd, "commands", None)
        if subs is None or params:
            found[" ".join(path)] = params
        for name, sub in (subs or {}).items():
            rec(sub, (*path, name))

    rec(typer.main.get_command(app), ())
    return found


TREE = walk_commands()


def test_battery_covers_every_command_and_flag() -> None:
    walked = {cmd: sorted(param_name(p) for p in params) for cmd, params in TREE.items()}
    listed = {cmd: sorted(flags) for cmd, flags in BATTERY.items()}
    missing = {c: f for c, f in walked.items() if c not in listed}
    assert not missing, f"commands without hostile cases in BATTERY: {missing}"
    stale = sorted(set(listed) - set(walked))
    assert not stale, f"BATTERY lists commands that no longer exist: {stale}"
    for cmd, flags in walked.items():
        assert flags == listed[cmd], f"{cmd!r}: flags {flags} but BATTERY lists {listed[cmd]}"


# ---------------------------------------------------------------------------------------------- running
@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Places]:
    base = tmp_path_factory.mktemp("hostile")
    project = make_project(base / "dog")
    (base / "empty").mkdir()
    (base / "note.txt").write_text("not a project\n")
    (base / "run.log.jsonl").write_text("{}\n")
    (base / "out").mkdir()
    (base / "cwd").mkdir()
    cwd = Path.cwd()
    os.chdir(base / "cwd")  # an empty directory: "" or "." must never find a project here
    try:
        yield Places(base=base, project=project, empty_dir=base / "empty", a_file=base / "note.txt",
                     log=base / "run.log.jsonl", out_dir=base / "out", fresh=base / "fresh")
    finally:
        os.chdir(cwd)


def tree_state(root: Path) -> dict[str, str]:
    state = {}
    for p in sorted(root.rglob("*")):
        state[str(p)] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return state


@contextmanager
def no_work() -> Iterator[None]:
    with mock.patch("cadenza.project.lock.ProjectLock.acquire", side_effect=WorkStarted("the lock was taken")):
        yield


def run_inprocess(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, "argv", ["cadenza", *argv]), redirect_stdout(out), redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def assert_refused(argv: list[str], code: int, out: str, err: str, needles: list[str]) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, f"{argv}: traceback\n{err}"
    assert code in (1, 2), f"{argv}: exit code {code}, stderr {err!r}, stdout {out[-300:]!r}"
    assert len(lines) == 1, f"{argv}: expected one line on stderr, got {len(lines)}: {err!r}"
    assert lines[0].startswith("error: "), f"{argv}: {lines[0]!r}"
    assert any(n in lines[0] for n in needles), f"{argv}: {lines[0]!r} names none of {needles}"
    assert out == "", f"{argv}: printed on stdout before refusing: {out[:300]!r}"
    return lines[0]


def argv_for(cmd: str, params: list[Any], places: Places, attacked: str, value: str) -> list[str]:
    """The command with every required parameter valid and ``attacked`` set to ``value``."""
    kinds = BATTERY[cmd]
    argv = cmd.split()
    for p in params:
        name = param_name(p)
        kind = kinds[name]
        if name == attacked:
            if p.param_type_name == "argument":
                argv.append(value)
            elif kind.flag:
                argv.append(f"{name}={value}")
            else:
                argv += [name, value]
        elif p.required:
            assert kind.valid is not None, f"{cmd} {name}: required, so its Kind needs a valid value"
            argv += [kind.valid(places)] if p.param_type_name == "argument" else [name, kind.valid(places)]
    return argv


CASES = [(cmd, name) for cmd in TREE for name in (param_name(p) for p in TREE[cmd]) if cmd in BATTERY
         and name in BATTERY[cmd]]


@pytest.mark.parametrize(("cmd", "flag"), CASES, ids=[f"{c or 'cadenza'}:{f}" for c, f in CASES])
@BATTERY_SETTINGS
@given(data=st.data())
def test_hostile_flag_is_refused_before_work(places: Places, cmd: str, flag: str, data: st.DataObject) -> None:
    kind = BATTERY[cmd][flag]
    value = data.draw(kind.hostile(places), label=f"{cmd} {flag}")
    argv = argv_for(cmd, TREE[cmd], places, flag, value)
    before = tree_state(places.base)
    with no_work():
        code, out, err = run_inprocess(argv)
    assert_refused(argv, code, out, err, kind.needles(flag, value))
    assert tree_state(places.base) == before, f"{argv}: files changed"


# ---------------------------------------------------------------------------------------------- cadenza.toml
@dataclass
class Key:
    """One leaf key of cadenza.toml: where it lives and what pydantic knows about it."""

    dotted: str  # the schema's name, e.g. task.real.perturbations.scale
    loc: str  # as the error names it, e.g. task.real.perturbations.0.scale
    tables: list[tuple[str, str]]  # ("table" | "array", dotted name) headers to open, outermost first
    name: str
    field: Any  # pydantic FieldInfo
    required_siblings: dict[str, str] = field(default_factory=dict)


REQUIRED_SAMPLES = {"project.name": '"dog"', "task.real.perturbations.kind": '"mass"'}


def _inner_model(ann: Any) -> tuple[str, type[BaseModel]] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "table", ann
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return "array", args[0]
    if origin is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        return "entry", args[1]
    return None


def walk_keys(model: type[BaseModel] = ProjectConfig, prefix: str = "", loc: str = "",
              tables: list[tuple[str, str]] | None = None) -> list[Key]:
    keys: list[Key] = []
    tables = tables or []
    for name, f in model.model_fields.items():
        dotted, here = f"{prefix}{name}", f"{loc}{name}"
        inner = _inner_model(f.annotation)
        if inner is None:
            siblings = {k.rsplit(".", 1)[1]: v for k, v in REQUIRED_SAMPLES.items()
                        if k.rsplit(".", 1)[0] == prefix.rstrip(".") and k != dotted}
            keys.append(Key(dotted, here, tables, name, f, siblings))
            continue
        how, sub = inner
        if how == "table":
            keys += walk_keys(sub, f"{dotted}.", f"{here}.", [*tables, ("table", dotted)])
        elif how == "array":  # [[task.real.perturbations]]: the first entry is index 0
            keys += walk_keys(sub, f"{dotted}.", f"{here}.0.", [*tables, ("array", dotted)])
        else:  # a table of tables, e.g. [mission.actions.<name>]
            keys += walk_keys(sub, f"{dotted}.", f"{here}.walk.", [*tables, ("table", f"{dotted}.walk")])
    return keys


def _bounds(f: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in f.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            if getattr(m, attr, None) is not None:
                out[attr] = getattr(m, attr)
    return out


def _toml_number(x: float | int) -> str:
    return repr(x) if isinstance(x, float) else str(x)


def hostile_literals(key: Key) -> st.SearchStrategy[str]:
    """Hostile TOML literals for one key, derived from its type and its declared bounds."""
    ann = key.field.annotation
    union = typing.get_origin(ann) in (typing.Union, types.UnionType)
    kinds = {a for a in (typing.get_args(ann) if union else (ann,)) if a is not type(None)}
    wrong = ["[1]", "{ a = 1 }"]
    b = _bounds(key.field)
    if kinds <= {int, float} and kinds:
        is_int = kinds == {int}
        limit = 2**63 - 1 if is_int else 1e300  # what TOML can write

        def nums(lo: float | None = None, hi: float | None = None, open_: bool = False) -> st.SearchStrategy[str]:
            if is_int:
                s = st.integers(min_value=None if lo is None else int(lo) + open_,
                                max_value=None if hi is None else int(hi) - open_)
            else:
                s = st.floats(min_value=lo, max_value=hi, exclude_min=open_ and lo is not None,
                              exclude_max=open_ and hi is not None, allow_nan=False, allow_infinity=False)
            return s.filter(lambda v: abs(v) <= limit).map(_toml_number)

        parts = [nums(hi=b["ge"], open_=True)] if "ge" in b else []
        parts += [nums(hi=b["gt"])] if "gt" in b else []
        parts += [nums(lo=b["le"], open_=True)] if "le" in b else []
        parts += [nums(lo=b["lt"])] if "lt" in b else []
        specials = ["nan", "inf", "-inf", "1e300", "-1e300", '"1"', "true", *wrong]
        if is_int:
            specials += ["1.5", "9223372036854775807", "-9223372036854775808"]
        return st.one_of(*parts, st.sampled_from(specials))
    if kinds == {bool}:
        return st.sampled_from(["1", '"yes"', "0.5", *wrong])
    if kinds == {str}:
        specials = ["5", "true", "1.5", *wrong]
        if any(getattr(m, "pattern", None) for m in key.field.metadata):
            specials += ['""', '"not valid!"']
        elif any(getattr(m, "min_length", None) for m in key.field.metadata):
            specials += ['""']
        return st.sampled_from(specials + CONSTRAINED_STR.get(key.dotted, []))
    if typing.get_origin(ann) is typing.Literal:
        return st.sampled_from(['""', '"nope"', "5", "true", *wrong])
    # containers: arrays and inline tables
    return st.sampled_from(CONTAINER_HOSTILE.get(key.dotted, ["5", '"x"', "true"]))


CONSTRAINED_STR: dict[str, list[str]] = {
    "task.id": ['"nocolon"', '"proxy:nope"'],
    "base.source": ['"nope"', '"no spaces allowed:x"'],
    "task.real.success": ['"no entry"', '"a:b:c"'],
    "task.real.collision": ['"no entry"'],
}
CONTAINER_HOSTILE: dict[str, list[str]] = {
    "mission.goals": ['[""]', '["   "]', f'["{"g" * 2001}"]', '["a", "a"]', "[5]", '"find the victim"', "5"],
    "task.real.env_kwargs": ["{ a = nan }", "{ a = inf }", "{ a = [1] }", "{ a = { b = 1 } }", "5", '"x"'],
    "mission.actions.params": ["{ d = [3.0, 1.0] }", "{ d = [nan, 1.0] }", "{ d = [0.0, inf] }", "{ d = [0.0] }",
                               '{ d = "x" }', "5"],
}
KEYS = walk_keys()

# The rules the issue pins (a key losing its bound would otherwise just lose its hostile values)
PINNED: dict[str, list[str]] = {
    "residual.seed": ["-1", "1000000", "1000003"],
    "residual.steps": ["0", "-5", "999"],
    "residual.hidden_dim": ["0", "-1"],
    "residual.alpha": ["0", "0.0", "-0.1", "nan", "inf"],
    "residual.rate_limit": ["0", "nan"],
    "governance.latency_budget_ms": ["0", "-1", "nan", "inf", "1e300"],
    "bench.cost_per_gpu_hour": ["-0.5", "nan", "inf"],
    "bench.cost_per_cpu_core_hour": ["-1", "nan", "-inf"],
    "bench.steps": ["0", "999"],
    "task.num_envs": ["0", "-1"],
    "task.level": ["-0.1", "1.5", "nan"],
    "task.real.perturbations.scale": ["-1", "nan", "inf"],
    "llm.api_key_env": ['""', '"MY KEY"'],
    "registry.backend": ['"MLflow"', '"s3"', '""'],
    "registry.uri": ['"127.0.0.1:5000"', '"ftp://host"', '"http://"'],
}


def config_text(key: Key, literal: str) -> str:
    lines = ['[project]', 'name = "dog"'] if key.dotted != "project.name" else ['[project]', f"name = {literal}"]
    if key.dotted.startswith("project."):
        if key.dotted != "project.name":
            lines.append(f"{key.name} = {literal}")
        return "\n".join(lines) + "\n"
    kind, header = key.tables[-1]
    lines.append(f"[[{header}]]" if kind == "array" else f"[{header}]")
    lines += [f"{k} = {v}" for k, v in key.required_siblings.items()]
    lines.append(f"{key.name} = {literal}")
    return "\n".join(lines) + "\n"


def test_every_config_key_is_walked() -> None:
    dotted = {k.dotted for k in KEYS}
    assert set(PINNED) <= dotted, sorted(set(PINNED) - dotted)
    assert "mission.actions.params" in dotted and len(KEYS) >= 45


PINNED_CASES = [(k, lit) for k in KEYS for lit in PINNED.get(k.dotted, [])]


@pytest.mark.parametrize(("key", "literal"), PINNED_CASES, ids=[f"{k.dotted}={v}" for k, v in PINNED_CASES])
def test_pinned_config_rules(places: Places, key: Key, literal: str) -> None:
    _assert_config_refused(places, key, literal)


@pytest.mark.parametrize("key", KEYS, ids=[k.dotted for k in KEYS])
@settings(max_examples=8, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_hostile_config_value_is_refused_before_work(places: Places, key: Key, data: st.DataObject) -> None:
    _assert_config_refused(places, key, data.draw(hostile_literals(key), label=key.dotted))


def _assert_config_refused(places: Places, key: Key, literal: str) -> None:
    root = places.base / "cfg"
    root.mkdir(exist_ok=True)
    (root / "cadenza.toml").write_text(config_text(key, literal), encoding="utf-8")
    argv = ["env", "residual", "init", str(root)]
    before = tree_state(places.base)
    with no_work():
        code, out, err = run_inprocess(argv)
    line = assert_refused([*argv, f"({key.dotted} = {literal[:40]})"], code, out, err, [key.loc])
    assert code == 2, line
    assert tree_state(places.base) == before


# what cadenza.toml points at: checked before any work (the command and flags that read each reference)
REFERENCES = [
    ('[base]\nsource = "nope/base.onnx"', [], "base.source"),
    ('[base]\nsource = "empty.onnx"', [], "base.source"),  # a directory named like a model
    ('[base]\nsource = "no_such_module_xyz:make_base"', [], "base.source"),
    ('[base]\nsource = "my_base:nothing_here"', [], "base.source"),  # the module exists, the attribute does not
    ('[base]\nsource = "builtin:nope"', [], "base.source"),
    ('[task]\nid = "builtin:reacher"', [], "task.id"),  # not a proxy task, and no --real
    ('[task.real]\ntask = "no_such_module_xyz:make_env"\nbase = "builtin:reacher-pd"', ["--real"], "task.real.task"),
    ('[task.real]\ntask = "builtin:nope"\nbase = "builtin:reacher-pd"', ["--real"], "task.real.task"),
    ('[task.real]\ntask = "NoSuchEnv-v9"\nbase = "builtin:reacher-pd"', ["--real"], "task.real.task"),
    ('[task.real]\ntask = "builtin:reacher"', ["--real"], "task.real.base"),
    ('[task.real]\ntask = "builtin:reacher"\nbase = "missing.onnx"', ["--real"], "task.real.base"),
    ('[task.real]\ntask = "builtin:reacher"\nbase = "builtin:reacher-pd"\nsuccess = "no_such_module_xyz:ok"',
     ["--real"], "task.real.success"),
    ('[task.real]\ntask = "builtin:reacher"\nbase = "builtin:reacher-pd"\ncollision = "my_base:nothing_here"',
     ["--real"], "task.real.collision"),
]
COMMANDS_READING_THE_TASK = [["env", "residual", "init"], ["env", "residual", "train"], ["env", "residual", "eval"],
                             ["env", "residual", "bench"], ["env", "distill"], ["env", "distill", "eval"]]


@pytest.mark.parametrize(("body", "flags", "key"), REFERENCES, ids=[r[2] + ":" + r[0].split("=")[-1][:30]
                                                                   for r in REFERENCES])
@pytest.mark.parametrize("command", COMMANDS_READING_THE_TASK, ids=" ".join)
def test_referenced_files_are_checked_before_work(places: Places, body: str, flags: list[str], key: str,
                                                  command: list[str]) -> None:
    root = places.base / "refs"
    root.mkdir(exist_ok=True)
    (root / "empty.onnx").mkdir(exist_ok=True)
    (root / "my_base.py").write_text("def make_base():\n    raise SystemExit('must not be imported')\n")
    (root / "cadenza.toml").write_text(f'[project]\nname = "refs"\n\n{body}\n')
    argv = [*command, str(root), *flags]
    before = tree_state(places.base)
    with no_work():
        code, out, err = run_inprocess(argv)
    assert_refused(argv, code, out, err, [key])
    assert code == 2
    assert tree_state(places.base) == before


def test_train_budget_below_one_round_is_refused(places: Places) -> None:
    """A budget that cannot hold one round (64 envs x 128 steps) would register an untrained version."""
    for argv, needle in ((["env", "residual", "train", str(places.project), "--steps", "5000"], "--steps"),):
        with no_work():
            code, out, err = run_inprocess(argv)
        line = assert_refused(argv, code, out, err, [needle])
        assert code == 2 and "8,192" in line
    root = places.base / "budget"
    root.mkdir(exist_ok=True)
    (root / "cadenza.toml").write_text('[project]\nname = "b"\n\n[residual]\nsteps = 1000\n')
    with no_work():
        code, out, err = run_inprocess(["env", "residual", "train", str(root)])
    assert_refused(["train"], code, out, err, ["residual.steps"])


def test_non_utf8_config_is_one_line(places: Places) -> None:
    root = places.base / "bytes"
    root.mkdir(exist_ok=True)
    (root / "cadenza.toml").write_bytes(b'[project]\nname = "\xff\xfe"\n')
    with no_work():
        code, out, err = run_inprocess(["env", "residual", "init", str(root)])
    line = assert_refused(["init"], code, out, err, ["cadenza.toml"])
    assert code == 2 and "UTF-8" in line


# ---------------------------------------------------------------------------------------------- real entry point
SUBPROCESS_SAMPLE: list[tuple[list[str | bytes], str]] = [
    (["env", "residual", "init", "{project}", "--hidden-dim", "0"], "--hidden-dim"),
    (["env", "residual", "init", "{project}", "--rate-limit", "nan"], "--rate-limit"),
    (["env", "residual", "train", "{project}", "--seed", "-1"], "--seed"),
    (["env", "residual", "train", "{project}", "--steps", "-5"], "--steps"),
    (["env", "run", "{project}", "--goal", ""], "--goal"),
    (["env", "run", "{project}", "--goal", b"\xff\xfe"], "--goal"),
    ([b"env", b"residual", b"init", b"{project}\xff"], "no such project directory"),
]


def test_real_entry_point_gives_one_line_and_never_imports_torch(places: Places) -> None:
    """Through the console script's code path in a fresh interpreter: no traceback, and torch is never imported."""
    probe = ("import sys\nfrom cadenza.cli.main import main\ntry:\n    main()\nfinally:\n"
             "    sys.stderr.write('TORCH_IMPORTED\\n' if 'torch' in sys.modules else '')\n")
    project = os.fsencode(places.project)
    for args, needle in SUBPROCESS_SAMPLE:
        argv = [
            a.replace(b"{project}", project) if isinstance(a, bytes) else a.replace("{project}", str(places.project))
            for a in args
        ]
        before = tree_state(places.base)
        proc = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, timeout=120)
        err = proc.stderr.decode("utf-8", "backslashreplace")
        assert "TORCH_IMPORTED" not in err, f"{argv}: imported torch before refusing"
        assert_refused([str(a) for a in argv], proc.returncode, proc.stdout.decode(), err, [needle])
        assert tree_state(places.base) == before
    script = Path(sys.executable).with_name("cadenza")
    if script.exists():  # and the installed console script itself
        proc = subprocess.run([str(script), "env", "residual", "init", str(places.project), "--hidden-dim", "0"],
                              capture_output=True, text=True, timeout=120)
        assert_refused(["cadenza"], proc.returncode, proc.stdout, proc.stderr, ["--hidden-dim"])
