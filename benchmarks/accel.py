"""Each acceleration knob on and off, side by side, on the PPO update and the rollout forward pass.

Workloads (the rescue-dog residual's architecture: obs 18 + base action 3 -> 2 x 256 tanh, actor and
critic; proxy task at level 1.0):

* ``ppo_update``: one ``PPO.update`` call on a real collected batch (64 envs x 128 steps = 8192 rows,
  minibatch 2048, ``--epochs`` epochs, critic warm-up excluded);
* ``rollout_64`` / ``rollout_1024``: the per-control-step forward of a rollout (actor mean + critic
  value) for 64 and 1024 parallel envs, under ``no_grad``.

Each knob is compared against the same baseline (1 intra-op thread, matmul precision ``highest``,
fp32, eager), the two sides interleaved ``--repeats`` times, medians compared. Knobs: intra-op threads
(1 vs the layer's choice), matmul precision (``highest`` vs ``high``), bf16 autocast, torch.compile
(steady state; its first-call cost is reported apart). The last column says what ``cadenza.accel``
decides for that workload on this machine, and why. All knobs are set through ``cadenza.accel``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/accel.py [--device auto] [--repeats 5] [--no-compile]

Writes ``benchmarks/results/accel.json`` (``accel_<device>.json`` for a non-CPU device) and prints a table.
"""

from __future__ import annotations

import os
import tempfile

# a fresh inductor cache, so torch.compile's first call is a cold compile on every run (set before torch loads)
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="cadenza-accel-bench-"))

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from cadenza.accel import Workload, autocast, configure, maybe_compile
from cadenza.accel.decisions import decide_bf16, decide_compile, decide_matmul_precision, decide_threads
from cadenza.accel.device import hardware, set_matmul_precision, set_threads
from cadenza.base.rescue_dog import RescueDogBase
from cadenza.residual.network import Critic, ResidualActor, ResidualArch
from cadenza.residual.ppo import PPO, PPOConfig
from cadenza.tasks.proxy.rescue_dog import RescueDogProxy

RESULTS = Path(__file__).parent / "results"
ARCH = ResidualArch(obs_dim=18, act_dim=3, hidden_dim=256)
KNOBS = ("threads", "matmul_precision", "bf16_autocast", "compile")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str, reps: int = 1) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / reps


def make_ppo(device: str, epochs: int) -> tuple[PPO, dict[str, torch.Tensor], Any]:
    cfg = PPOConfig(num_envs=64, n_steps=128, minibatch_size=2048, epochs=epochs, target_kl=None)
    ppo = PPO(ARCH, cfg, RescueDogProxy(num_envs=64, level=1.0), RescueDogBase(), device=device, seed=0)
    batch, stats, _ = ppo.collect()
    ppo.rounds_done = 1  # time the steady update, not the first round's critic warm-up
    return ppo, batch, stats


class Setting:
    """Apply one side (off / on) of one knob around a call, through cadenza.accel."""

    def __init__(self, knob: str, on: bool, tuned_threads: int, settings: Any) -> None:
        self.knob, self.on, self.tuned, self.settings = knob, on, tuned_threads, settings

    def __enter__(self) -> Setting:
        if self.on and self.knob == "threads":
            set_threads(self.tuned)
        if self.on and self.knob == "matmul_precision":
            set_matmul_precision("high")
        self._amp = autocast(self.settings) if self.on and self.knob == "bf16_autocast" else None
        if self._amp is not None:
            self._amp.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._amp is not None:
            self._amp.__exit__(*exc)
        set_threads(1)
        set_matmul_precision("highest")


def bench_update(device: str, epochs: int, repeats: int, tuned: int, amp_settings: Any, do_compile: bool,
                 compile_settings: Any) -> dict[str, Any]:
    eager, batch, stats = make_ppo(device, epochs)
    out: dict[str, Any] = {"rows": int(batch["x"].shape[0]), "minibatch": 2048, "epochs": epochs,
                           "minibatch_steps_per_call": epochs * int(np.ceil(batch["x"].shape[0] / 2048))}
    compiled = None
    if do_compile:
        torch._dynamo.reset()  # a cold first call: no graph from an earlier workload to reuse
        compiled = copy.deepcopy(eager)
        env = {"CADENZA_COMPILE": "1"}
        compiled.actor.net = maybe_compile(compiled.actor.net, compile_settings, name="actor (update)", batch=2048,
                                           expected_calls=1, env=env)
        compiled.critic.net = maybe_compile(compiled.critic.net, compile_settings, name="critic (update)",
                                            batch=2048, expected_calls=1, env=env)
        first = timed(lambda: compiled.update(batch, copy.copy(stats)), device)
        out["compile_first_call_s"] = first
    timed(lambda: eager.update(batch, copy.copy(stats)), device)  # warm-up
    for knob in KNOBS:
        if knob == "compile" and compiled is None:
            continue
        offs, ons = [], []
        for r in range(repeats):
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                ppo = compiled if (knob == "compile" and on) else eager
                with Setting(knob, on and knob != "compile", tuned, amp_settings):
                    t = timed(lambda p=ppo: p.update(batch, copy.copy(stats)), device)
                (ons if on else offs).append(t)
        out[knob] = _pair(offs, ons)
    if compiled is not None:
        out["compile"]["first_call_s"] = out["compile_first_call_s"]
        out["compile_first_call_s_over_steady"] = out["compile_first_call_s"] - out["compile"]["on_ms"] / 1e3
    return out


def bench_rollout(device: str, envs: int, repeats: int, calls: int, tuned: int, amp_settings: Any,
                  do_compile: bool, compile_settings: Any) -> dict[str, Any]:
    eager, _, _ = make_ppo(device, 1)
    actor, critic = eager.actor.net, eager.critic
    x = torch.randn(envs, ARCH.input_dim, device=device)

    def fwd(a: Any, c: Any) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad():
                return a(x), c(x)
        return call

    out: dict[str, Any] = {"rows": envs}
    compiled_call = None
    if do_compile:
        torch._dynamo.reset()  # a cold first call: no graph from an earlier workload to reuse
        ca = maybe_compile(copy.deepcopy(actor), compile_settings, name=f"actor (rollout {envs})", batch=envs,
                           expected_calls=1, training=False, env={"CADENZA_COMPILE": "1"})
        cc_net = maybe_compile(copy.deepcopy(critic.net), compile_settings, name=f"critic (rollout {envs})",
                               batch=envs, expected_calls=1, training=False, env={"CADENZA_COMPILE": "1"})
        compiled_call = fwd(ca, lambda z: cc_net(z).squeeze(-1))
        out["compile_first_call_s"] = timed(compiled_call, device)
    eager_call = fwd(actor, critic)
    timed(eager_call, device, 20)
    for knob in KNOBS:
        if knob == "compile" and compiled_call is None:
            continue
        offs, ons = [], []
        for r in range(repeats):
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                call = compiled_call if (knob == "compile" and on) else eager_call
                with Setting(knob, on and knob != "compile", tuned, amp_settings):
                    t = timed(call, device, calls)  # type: ignore[arg-type]
                (ons if on else offs).append(t)
        out[knob] = _pair(offs, ons)
    if compiled_call is not None:
        out["compile"]["first_call_s"] = out["compile_first_call_s"]
    return out


def _pair(offs: list[float], ons: list[float]) -> dict[str, Any]:
    off, on = statistics.median(offs), statistics.median(ons)
    return {"off_ms": off * 1e3, "on_ms": on * 1e3, "speedup": off / on if on > 0 else None,
            "off_runs_ms": [x * 1e3 for x in offs], "on_runs_ms": [x * 1e3 for x in ons]}


def decisions(device: str, workload: Workload, eager_call_s: float | None) -> dict[str, dict[str, Any]]:
    """What cadenza.accel picks for ``workload`` here, from the hardware alone (no environment overrides)."""
    hw = hardware(device)
    intra, _ = decide_threads(hw, {}, os.getloadavg()[0])
    mm = decide_matmul_precision(hw)
    bf = decide_bf16(hw, workload, {})
    comp = decide_compile(hw, workload, {}, eager_call_s)
    return {"threads": {"value": intra.value, "reason": intra.reason},
            "matmul_precision": {"value": mm.value, "reason": mm.reason},
            "bf16_autocast": {"value": bf.value, "reason": bf.reason},
            "compile": {"value": comp.value, "reason": comp.reason}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (cuda -> mps -> cpu), cuda, mps or cpu (default auto)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved off/on pairs per knob (default 5)")
    ap.add_argument("--epochs", type=int, default=2, help="PPO epochs per timed update call (default 2)")
    ap.add_argument("--calls", type=int, default=200, help="rollout forward calls per timing (default 200)")
    ap.add_argument("--train-steps", type=int, default=200_000,
                    help="env steps of the run the decisions assume (default 200000, the default budget)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (its first call is slow)")
    args = ap.parse_args()

    base_settings = configure(args.device)
    device = base_settings.device
    hw = hardware(device)
    tuned = decide_threads(hw, {})[0].value  # the physical-core count; the load-aware pick is in the last column
    set_threads(1)
    set_matmul_precision("highest")
    amp_settings = copy.copy(base_settings)
    amp_settings.bf16_autocast = True  # the "on" side of the bf16 row, whatever the decision
    compile_settings = copy.deepcopy(base_settings)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    work = {"ppo_update": bench_update(device, args.epochs, args.repeats, tuned, amp_settings, not args.no_compile,
                                       compile_settings)}
    for envs in (64, 1024):
        work[f"rollout_{envs}"] = bench_rollout(device, envs, args.repeats, args.calls, tuned, amp_settings,
                                                not args.no_compile, compile_settings)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()

    # what the layer decides for each workload over a default training run (200k env steps, 64 envs)
    params = sum(p.numel() for m in (ResidualActor(ARCH).net, Critic(ARCH).net) for p in m.parameters())
    rounds = max(1, args.train_steps // (64 * 128))  # default plan: 64 envs x 128 steps, 10 epochs x 4 minibatches
    upd = work["ppo_update"]
    steps_per_call = upd["minibatch_steps_per_call"]
    wl_update = Workload("ppo_update", params=params, batch=2048, expected_calls=rounds * 10 * 4, training=True)
    for name, wl, eager_s in (
        ("ppo_update", wl_update, upd["threads"]["off_ms"] / 1e3 / steps_per_call),
        ("rollout_64", Workload("rollout", params=params, batch=64, expected_calls=rounds * 128, training=False),
         work["rollout_64"]["threads"]["off_ms"] / 1e3),
        ("rollout_1024", Workload("rollout", params=params, batch=1024, expected_calls=rounds * 128, training=False),
         work["rollout_1024"]["threads"]["off_ms"] / 1e3),
    ):
        work[name]["workload"] = wl.as_dict()
        work[name]["cadenza_decides"] = decisions(device, wl, eager_s)
    set_threads(1)

    result = {
        "benchmark": "accel", "task": "proxy", "device": device, "device_name": hw.device_name,
        "architecture": ARCH.as_dict(), "repeats": args.repeats, "wall_s": wall,
        "baseline": "1 intra-op thread, matmul precision highest, fp32, eager",
        "tuned_threads": tuned, "hardware": hw.as_dict(), "workloads": work,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_before": load_before,
                    "loadavg_after": load_after},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
    }
    out = RESULTS / ("accel.json" if device == "cpu" else f"accel_{device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {out}")


def print_table(result: dict[str, Any]) -> None:
    con = Console(width=160)
    t = Table(title=f"acceleration knobs on/off \\[proxy rescue-dog residual, {result['device']}: "
                    f"{result['device_name']}], median of {result['repeats']}; baseline: {result['baseline']}",
              title_justify="left")
    for col in ("workload", "knob", "off", "on", "speedup", "cadenza decides"):
        t.add_column(col, justify="left" if col in ("workload", "knob", "cadenza decides") else "right")
    labels = {"threads": f"threads 1 -> {result['tuned_threads']}", "matmul_precision": "matmul highest -> high",
              "bf16_autocast": "bf16 autocast", "compile": "torch.compile (steady)"}
    for wname, w in result["workloads"].items():
        unit = "ms/call"
        for knob in KNOBS:
            if knob not in w:
                continue
            k = w[knob]
            dec = w["cadenza_decides"][knob]
            val = dec["value"] if knob in ("threads", "matmul_precision") else ("on" if dec["value"] else "off")
            t.add_row(wname, labels[knob], f"{k['off_ms']:.3f} {unit}", f"{k['on_ms']:.3f}",
                      f"{k['speedup']:.2f}x", f"{val}: {dec['reason']}")
        if "compile_first_call_s" in w:
            t.add_row(wname, "torch.compile first call", "", f"{w['compile_first_call_s']:.1f} s", "", "")
        t.add_section()
    con.print(t)
    la, lb = result["machine"]["loadavg_before"], result["machine"]["loadavg_after"]
    con.print(f"load average {la[0]:.1f} -> {lb[0]:.1f} on {result['machine']['cpus']} CPUs; wall "
              f"{result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
