"""Which backend a command runs its parallel work on: flags over ``[scale]`` in cadenza.toml.

``[scale] backend = "local" | "ray"`` (default ``local``), ``ray_address`` (default ``""``: start a
local Ray instance for the command; ``"auto"`` or ``"HOST:PORT"``: join an existing cluster) and
``rollout_workers`` (default 1: a training collects its rollouts in one piece; N > 1: in N shards, see
:mod:`cadenza.residual.rollout`). The flags ``--backend``, ``--ray-address`` and ``--rollout-workers``
override them for one command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from cadenza.errors import CadenzaError, UsageError

Backend = Literal["local", "ray"]
BACKENDS: tuple[Backend, ...] = ("local", "ray")
RAY_EXTRA = 'pip install -e ".[ray]"'
ADDRESS = re.compile(r"auto|(ray://)?[A-Za-z0-9._-]+:(\d{1,5})")  # what --ray-address accepts (besides "")


@dataclass(frozen=True)
class ScaleSettings:
    backend: Backend = "local"
    ray_address: str | None = None  # None: a local Ray instance started (and stopped) by the command
    rollout_workers: int = 1  # training: rollout shards (local: in this process; ray: one actor each)

    def describe(self) -> str:
        if self.backend == "local":
            return "local processes"
        return f"Ray cluster at {self.ray_address}" if self.ray_address else "a local Ray instance"

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "ray_address": self.ray_address}

    def rollout_note(self) -> str | None:
        """What a training command should tell the user about where its rollouts run."""
        if self.rollout_workers > 1:
            return f"rollouts: {self.rollout_workers} shards on {self.describe()}"
        if self.backend == "ray":
            return ("note: --backend ray with one rollout worker collects in one piece in this process; "
                    "--rollout-workers N puts N shards on Ray actors")
        return None

    def training(self, cluster: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a training report records: backend, address, rollout shards, and the cluster's nodes and
        CPUs when its shards ran on one."""
        where = {**self.as_dict(), "rollout_workers": self.rollout_workers}
        where.update({k: cluster[k] for k in ("nodes", "cpus") if cluster and k in cluster})
        return where

    def check_shards(self, envs: int, what: str, algorithm: str = "ppo") -> None:
        """One line (UsageError) when ``rollout_workers`` cannot shard ``envs`` parallel envs (named by
        ``what``) of this learner: sharded rollouts are built for PPO, at most one shard per env."""
        n = self.rollout_workers
        if n > 1 and algorithm == "auto":
            raise UsageError(f"--rollout-workers {n}: sharded rollouts are built for PPO, and algorithm 'auto' may "
                             "pick SAC, which collects in one piece (set [residual] algorithm = \"ppo\" to shard)")
        if n > 1 and algorithm != "ppo":
            raise UsageError(f"--rollout-workers {n}: sharded rollouts are built for PPO; algorithm {algorithm!r} "
                             "collects in one piece (use --rollout-workers 1)")
        if n > envs:
            raise UsageError(f"--rollout-workers {n}: more shards than the {envs} {what}; use at most that many")


def ray_import_error() -> str | None:
    """Why Ray cannot be used here (None when it can)."""
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        return f"--backend ray needs Ray: {RAY_EXTRA}"
    return None


def resolve_scale(config_section: Any, backend: str | None = None, ray_address: str | None = None,
                  rollout_workers: int | None = None) -> ScaleSettings:
    """Flags over the project's ``[scale]`` section; a bad combination or a missing Ray is a one-line error."""
    b = backend if backend is not None else config_section.backend
    if b not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {b!r}")
    addr = ray_address if ray_address is not None else config_section.ray_address
    addr = (addr or "").strip() or None
    m = ADDRESS.fullmatch(addr) if addr is not None else None
    if addr is not None and (m is None or (m.group(2) is not None and not 1 <= int(m.group(2)) <= 65535)):
        raise UsageError(f"--ray-address: expected auto, HOST:PORT or ray://HOST:PORT (port 1-65535), got "
                         f"{addr[:80]!r}")
    if addr is not None and b != "ray":
        raise UsageError(f"--ray-address {addr} is only used with --backend ray (the backend is {b})")
    if b == "ray":
        why = ray_import_error()
        if why is not None:
            raise CadenzaError(why)
    workers = config_section.rollout_workers if rollout_workers is None else rollout_workers
    if workers < 1:
        raise UsageError(f"--rollout-workers must be >= 1, got {workers}")
    return ScaleSettings(backend=b, ray_address=addr, rollout_workers=workers)  # type: ignore[arg-type]
