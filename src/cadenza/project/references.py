"""Check what ``cadenza.toml`` points at before any work starts: base sources, entry points, tasks.

Nothing here imports torch or runs the project's own code. An ONNX base must be an existing file; a
``module:attr`` entry point must name a module that can be found (for a module inside the project
directory, its file must exist and, for a plain ``.py`` file, define ``attr`` at the top level; an
installed module is only looked up, never imported). Every problem is a one-line
:class:`~cadenza.project.config.ConfigError` that names the file and the key.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from cadenza.project.config import CONFIG_NAME, ConfigError, Project

ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
BUILTIN_REAL_TASKS = ("reacher", "rescue-dog")  # cadenza.tasks.real.builtin


def builtin_bases() -> tuple[str, ...]:
    names = ["rescue-dog"]
    try:
        from cadenza.base.builtin_real import BUILTINS
    except ImportError:  # pragma: no cover
        BUILTINS = {}
    return (*names, *BUILTINS)


def _local_module(root: Path, parts: list[str]) -> Path | bool | None:
    """The file of a project-local module, True for a package / namespace, None when not local."""
    here = root
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if last and (here / f"{part}.py").is_file():
            return here / f"{part}.py"
        if (here / part).is_dir():
            here = here / part
            continue
        return None if i == 0 else False
    init = here / "__init__.py"
    return init if init.is_file() else True


def _top_level_names(path: Path) -> set[str] | None:
    """Names a module file defines at its top level (None: cannot tell, e.g. ``import *``)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return set()
    names: set[str] = set()
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    stack.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])
    return None if "__getattr__" in names else names


def _find_module(module: str, root: Path, key: str) -> Path | None:
    """The file of a project-local module (None for a package or an installed module); raise if not found."""
    where = root / CONFIG_NAME
    parts = module.split(".")
    if any(not p.isidentifier() for p in parts):
        raise ConfigError(f"{where}: key '{key}': {module!r} is not a module name")
    local = _local_module(root, parts)
    if local is False:
        raise ConfigError(f"{where}: key '{key}': no module {module!r} in the project directory {root}")
    if isinstance(local, Path):
        return local
    if local is True:
        return None
    try:  # an installed module: look it up without importing it (a top-level lookup runs no code)
        found = importlib.util.find_spec(parts[0]) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(f"{where}: key '{key}': cannot find module {parts[0]!r} (not in the project directory "
                          f"{root}, not installed)")
    return None


def check_entry_point(spec: str, root: Path, key: str) -> None:
    """``package.module:attr``: the module can be found, and a project-local ``.py`` defines ``attr``."""
    where = root / CONFIG_NAME
    if not ENTRY_POINT.fullmatch(spec):
        raise ConfigError(f"{where}: key '{key}': {spec!r} is not an entry point 'package.module:attr'")
    module, _, attr = spec.partition(":")
    path = _find_module(module, root, key)
    if path is not None:
        names = _top_level_names(path)
        if names is not None and attr.split(".")[0] not in names:
            raise ConfigError(f"{where}: key '{key}': {path} defines no {attr.split('.')[0]!r}")


def check_base(project: Project, real: bool = False) -> None:
    """The base source the command will load exists (a built-in name, an ONNX file or an entry point)."""
    key = "task.real.base" if real else "base.source"
    src = project.config.task.real.base if real else project.config.base.source
    where = project.root / CONFIG_NAME
    if not src:
        raise ConfigError(f"{where}: key '{key}': required for --real")
    if src.startswith("builtin:"):
        name = src.removeprefix("builtin:")
        if name not in builtin_bases():
            raise ConfigError(f"{where}: key '{key}': unknown built-in base {src!r}; available: "
                              + ", ".join(f"'builtin:{b}'" for b in builtin_bases()))
    elif src.endswith(".onnx"):
        path = Path(src) if Path(src).is_absolute() else project.root / src
        try:
            ok, exists = path.is_file(), path.exists()
        except (OSError, ValueError) as e:
            raise ConfigError(f"{where}: key '{key}': {src!r}: cannot read it ({e})") from None
        if not ok:
            why = "is not a file" if exists else "no such file"
            raise ConfigError(f"{where}: key '{key}': ONNX base {path}: {why}")
    else:
        check_entry_point(src, project.root, key)


def check_task(project: Project, real: bool = False) -> None:
    """The task the command runs on can be built: a proxy id without --real, ``[task.real]`` with it."""
    where = project.root / CONFIG_NAME
    if not real:
        if not project.config.task.id.startswith("proxy:"):
            raise ConfigError(f"{where}: key 'task.id': {project.config.task.id!r} has no proxy task; run the "
                              "command with --real (it uses [task.real])")
        return
    cfg = project.config.task.real
    task = cfg.task.strip()
    if not task:
        raise ConfigError(f"{where}: key 'task.real.task': required for --real "
                          "(e.g. 'builtin:reacher', a Gymnasium id or 'my_module:make_env')")
    if task.startswith("builtin:"):
        if task.removeprefix("builtin:") not in BUILTIN_REAL_TASKS:
            raise ConfigError(f"{where}: key 'task.real.task': unknown built-in task {task!r}; available: "
                              + ", ".join(f"'builtin:{t}'" for t in BUILTIN_REAL_TASKS))
    elif ENTRY_POINT.fullmatch(task):
        check_entry_point(task, project.root, "task.real.task")
    else:
        check_gym_id(task, project.root)
    for key in ("success", "collision"):
        spec = getattr(cfg, key)
        if spec:
            check_entry_point(spec, project.root, f"task.real.{key}")


def check_gym_id(env_id: str, root: Path) -> None:
    """A Gymnasium id is registered (``my_pkg:MyEnv-v0``: ``my_pkg`` can be found; it registers the id)."""
    module, sep, _ = env_id.rpartition(":")
    if sep:
        _find_module(module, root, "task.real.task")
        return
    import gymnasium as gym

    if env_id not in gym.registry:
        raise ConfigError(f"{root / CONFIG_NAME}: key 'task.real.task': {env_id!r} is not a registered Gymnasium "
                          "id, a 'builtin:<name>' task or a 'module:attr' env factory")


def check_project(project: Project, real: bool = False, *, base: bool = True) -> None:
    """Everything a task-running command needs from the project, checked up front."""
    check_task(project, real)
    if base:
        check_base(project, real)
