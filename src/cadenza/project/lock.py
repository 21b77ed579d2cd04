"""The project lock: one writing command at a time per project (``<project>/.cadenza/lock``).

A writing command holds an exclusive ``flock`` on the lock file for as long as it runs, and the file
says who holds it (JSON: ``pid``, ``command``, ``since``, ``host``), so a second command is refused
with one line naming the holder. The kernel drops the ``flock`` when its process dies however it
dies, so a lock left by a crashed or killed command is *stale*: the next command takes it over and
says so in a note. A lock written on another host is never taken over (its pid cannot be checked
from here, and ``flock`` may not reach across a network file system); delete the file by hand once
nothing runs there. Without ``fcntl`` (Windows) the file is created with ``O_CREAT | O_EXCL`` and a
stale one is recognised by its pid alone. What the lock does and does not protect: SECURITY.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cadenza.errors import CadenzaError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_PATH = Path(".cadenza") / "lock"
_ATTEMPTS = 50


class ProjectLocked(CadenzaError):
    """Another command holds the project (exit code 1: run again when it is done)."""

    exit_code = 1


@dataclass(frozen=True)
class LockInfo:
    pid: int
    command: str
    since: str
    host: str

    @classmethod
    def parse(cls, raw: bytes) -> LockInfo | None:
        try:
            d = json.loads(raw.decode("utf-8"))
            return cls(int(d["pid"]), str(d["command"]), str(d["since"]), str(d["host"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def describe(self) -> str:
        where = "" if self.host == socket.gethostname() else f" on host {self.host}"
        return f"'{self.command}' (pid {self.pid}{where}, since {self.since})"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def lock_path(root: str | Path) -> Path:
    return Path(root) / LOCK_PATH


def read_lock(root: str | Path) -> LockInfo | None:
    """Who holds (or last held) the project's lock, if the file says."""
    try:
        return LockInfo.parse(lock_path(root).read_bytes())
    except OSError:
        return None


class ProjectLock:
    """``with ProjectLock(root, "env residual train") as lock:``.

    ``lock.note`` says if a stale lock was taken over."""

    def __init__(self, root: str | Path, command: str) -> None:
        self.root = Path(root)
        self.path = lock_path(self.root)
        self.command = command
        self.note: str | None = None
        self._fd: int | None = None
        self._made_dir = False

    # ------------------------------------------------------------------ acquire / release
    def acquire(self) -> ProjectLock:
        if self._fd is not None:
            raise RuntimeError("lock already held")
        self._made_dir = not self.path.parent.exists()
        for _ in range(_ATTEMPTS):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._open_flock() if fcntl is not None else self._open_excl()
            if fd is not None:
                self._fd = fd
                return self
        raise ProjectLocked(f"{self.root}: could not take the project lock {self.path} (it keeps changing hands); "
                            "run the command again")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if self._is_current(fd):
                self.path.unlink()
        os.close(fd)
        if self._made_dir:  # leave the project as it was when nothing else is in .cadenza
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()

    def __enter__(self) -> ProjectLock:
        return self.acquire()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    # ------------------------------------------------------------------ internals
    def _info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "command": self.command, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": socket.gethostname()}

    def _refuse(self, held: LockInfo | None) -> ProjectLocked:
        who = held.describe() if held else "another cadenza command (it has not written its name yet)"
        return ProjectLocked(f"{self.root}: locked by {who}; wait for it to finish and run this command again "
                             f"(lock file: {self.path})")

    def _is_current(self, fd: int) -> bool:
        """Whether the lock path still names the file ``fd`` has open (it may have been released and replaced)."""
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except OSError:
            return False

    def _open_flock(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except FileNotFoundError:  # .cadenza was removed under us: try again
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            held = LockInfo.parse(_read_fd(fd))
            os.close(fd)
            raise self._refuse(held) from None
        if not self._is_current(fd):  # the holder released (and unlinked) it between our open and flock
            os.close(fd)
            return None
        previous = _read_fd(fd)
        if previous.strip():
            held = LockInfo.parse(previous)
            if held is not None and held.host != socket.gethostname():
                os.close(fd)
                raise ProjectLocked(f"{self.root}: locked by {held.describe()}, which cannot be checked from this "
                                    f"host; if no cadenza command runs there, delete {self.path}")
            self.note = self._stale_note(held)
        _write_fd(fd, self._info())
        return fd

    def _open_excl(self) -> int | None:  # pragma: no cover - the fallback without fcntl
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            held = read_lock(self.root)
            if held is not None and held.host == socket.gethostname() and not pid_alive(held.pid):
                self.note = self._stale_note(held)
                self.path.unlink(missing_ok=True)
                return None
            raise self._refuse(held) from None
        except FileNotFoundError:
            return None
        _write_fd(fd, self._info())
        return fd

    def _stale_note(self, held: LockInfo | None) -> str:
        if held is None:
            return f"took over an unreadable stale lock ({self.path})"
        gone = "no longer running" if not pid_alive(held.pid) else "no longer holding it"
        return f"took over a stale lock left by {held.describe()}: pid {held.pid} is {gone}"


def _read_fd(fd: int) -> bytes:
    try:
        return os.pread(fd, 4096, 0)
    except OSError:
        return b""


def _write_fd(fd: int, info: dict[str, Any]) -> None:
    data = (json.dumps(info) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
