"""The project lock: a second writing command on a project is refused; a stale lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cadenza.project.lock import LockInfo, ProjectLock, ProjectLocked, lock_path, pid_alive, read_lock
from tests.conftest import make_project, run_cli

HOLDER = textwrap.dedent("""
    import sys, time
    from cadenza.project.lock import ProjectLock
    with ProjectLock(sys.argv[1], "cadenza env residual train"):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "dog")


def hold(project: Path, seconds: float = 60.0) -> subprocess.Popen[str]:
    """Another process that takes the project's lock through the library and keeps it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(project), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_command_is_refused_while_another_holds_the_project(project: Path) -> None:
    holder = hold(project)
    try:
        info = read_lock(project)
        assert info is not None and info.pid == holder.pid and info.command == "cadenza env residual train"
        assert info.host == socket.gethostname()
        # the second command is a real CLI process, refused with one line that names the holder
        cli = Path(sys.executable).with_name("cadenza")
        cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "cadenza.cli.main"]
        out = subprocess.run([*cmd, "env", "residual", "init", str(project), "--hidden-dim", "8"], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.stderr
        assert f"pid {holder.pid}" in lines[0] and "cadenza env residual train" in lines[0]
        assert f"since {info.since}" in lines[0] and "locked by" in lines[0]
        assert not (project / "residual").exists()  # refused before any work
    finally:
        holder.terminate()
        holder.wait(timeout=30)


def test_refused_in_process_too_and_free_again_after(project: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    holder = hold(project, seconds=60)
    try:
        for argv in (["env", "rollback", project, "residual"], ["env", "run", project, "--headless"],
                     ["init", project, "--force"]):
            code, _, err = run_cli(argv, capsys, monkeypatch)
            assert code == 1 and f"pid {holder.pid}" in err, (argv, err)
    finally:
        holder.terminate()
        holder.wait(timeout=30)
    # a killed holder leaves its file behind; the next command takes the stale lock over with a note
    code, _, err = run_cli(["env", "history", project], capsys, monkeypatch)
    assert code == 0  # read-only: never needs the lock
    code, _, err = run_cli(["init", project, "--force"], capsys, monkeypatch)
    assert code == 0, err
    assert f"took over a stale lock left by 'cadenza env residual train' (pid {holder.pid}" in err
    assert not lock_path(project).exists()  # released at the end


def test_stale_lock_with_a_dead_pid_is_taken_over(project: Path) -> None:
    path = lock_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    pid = dead_pid()
    path.write_text(json.dumps({"pid": pid, "command": "cadenza env distill", "since": "2030-01-01T00:00:00+0000",
                                "host": socket.gethostname()}))
    assert not pid_alive(pid)
    with ProjectLock(project, "cadenza env distill eval") as lock:
        assert lock.note is not None and f"pid {pid} is no longer running" in lock.note
        held = read_lock(project)
        assert held is not None and held.pid == os.getpid() and held.command == "cadenza env distill eval"
    assert not path.exists() and path.parent.is_dir()  # .cadenza was there before: it stays


def test_lock_from_another_host_is_not_taken_over(project: Path) -> None:
    path = lock_path(project)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 1, "command": "cadenza env residual train", "since": "2030-01-01T00:00:00+0000",
                                "host": "some-other-host"}))
    with pytest.raises(ProjectLocked, match=r"on host some-other-host.*delete"):
        ProjectLock(project, "cadenza env residual eval").acquire()
    assert json.loads(path.read_text())["host"] == "some-other-host"  # left alone


def test_lock_leaves_the_project_as_it_found_it(project: Path) -> None:
    assert not (project / ".cadenza").exists()
    with ProjectLock(project, "cadenza env run"):
        assert read_lock(project) == LockInfo(os.getpid(), "cadenza env run", read_lock(project).since,  # type: ignore[union-attr]
                                              socket.gethostname())
        with pytest.raises(ProjectLocked, match=f"pid {os.getpid()}"):  # not re-entrant, even in one process
            ProjectLock(project, "cadenza env run").acquire()
    assert not (project / ".cadenza").exists()


def test_only_one_of_many_racing_processes_gets_the_lock(project: Path) -> None:
    racer = textwrap.dedent("""
        import sys, time
        from cadenza.project.lock import ProjectLock, ProjectLocked
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
        try:
            with ProjectLock(sys.argv[1], "racer"):
                print("got", flush=True)
                time.sleep(3.0)
        except ProjectLocked:
            print("refused", flush=True)
    """)
    start = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", racer, str(project), str(start)], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(results) == ["got", "refused", "refused", "refused"], results
