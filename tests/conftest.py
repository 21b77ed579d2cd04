"""Shared fixtures: small real projects made with the real scaffold."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cadenza.cli.main import main
from cadenza.project.scaffold import init_project
from cadenza.tasks.proxy.rescue_dog import RescueDogProxy

ROOT = Path(__file__).resolve().parent.parent


def make_project(path: Path, **overrides: str) -> Path:
    """``cadenza init`` into ``path``, then set ``section.key = value`` lines (TOML literals)."""
    init_project(path, name=path.name.replace("_", "-"))
    cfg = path / "cadenza.toml"
    lines = cfg.read_text().splitlines()
    for dotted, value in overrides.items():
        section, key = dotted.rsplit(".", 1)
        if f"[{section}]" not in lines:  # a section the scaffold leaves out ([scale], [tracking], ...)
            lines += ["", f"[{section}]"]
        head = lines.index(f"[{section}]")
        end = next((i for i in range(head + 1, len(lines)) if lines[i].startswith("[")), len(lines))
        hit = next((i for i in range(head + 1, end) if re.match(rf"{re.escape(key)}\s*=", lines[i])), None)
        if hit is None:
            lines.insert(head + 1, f"{key} = {value}")
        else:
            lines[hit] = f"{key} = {value}"
    text = "\n".join(lines) + "\n"
    cfg.write_text(text)
    return path



def tiny_reacher_project(path: Path, *, eval_episodes: int, min_episodes: int) -> Path:
    """A MuJoCo reacher project (runs with ``--real`` only) with a small residual and evaluation."""
    path.mkdir(parents=True)
    (path / "cadenza.toml").write_text(f"""\
[project]
name = "{path.name}"

[task]
id = "builtin:reacher"
num_envs = 8

[task.real]
task = "builtin:reacher"
base = "builtin:reacher-pd"

[residual]
hidden_dim = 32
alpha = 0.2

[governance]
eval_episodes = {eval_episodes}
min_episodes = {min_episodes}
max_eval_episodes = {3 * eval_episodes}
validation_episodes = {eval_episodes}
""")
    return path

@pytest.fixture
def small_project(tmp_path: Path) -> Path:
    """A rescue-dog project with a tiny budget and evaluation, for fast end-to-end tests."""
    return make_project(tmp_path / "dog", **{
        "task.num_envs": "16", "residual.steps": "8192", "residual.hidden_dim": "32",
        "governance.eval_episodes": "60", "governance.min_episodes": "50", "governance.max_eval_episodes": "180",
        "governance.validation_episodes": "60",
    })


def run_cli(args: list[str | Path], capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """Run ``cadenza ARGS`` through the console-script entry point; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["cadenza", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def proxy_observations(base, *, num_envs: int, steps: int, seed: int, level: float = 1.0) -> np.ndarray:
    """Real float32 observations, shape (steps, num_envs, 18), of a base-driven rescue-dog proxy rollout."""
    task = RescueDogProxy(num_envs=num_envs, level=level)
    obs, _ = task.reset(seed=seed)
    rows = []
    for _ in range(steps):
        rows.append(obs.copy())
        obs, *_ = task.step(base(obs))
    return np.array(rows)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (sqlite store, proxied artefacts under the temp folder)."""
    pytest.importorskip("mlflow")
    base = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}", "--artifacts-destination", str(base / "art"),
           "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=base,
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("mlflow server did not come up on 127.0.0.1")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
