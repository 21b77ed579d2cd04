"""``cadenza env train``: build the judge and the planner, call :func:`cadenza.judge.train.train_prompt`, print."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from cadenza.cli.common import EXIT_BLOCK, EXIT_DEPLOY, EXIT_NEEDS_DATA, console, err_console
from cadenza.governance.stats import wilson
from cadenza.judge.train import TrainOptions, TrainResult, train_prompt
from cadenza.llm.settings import LlmSettings
from cadenza.project.config import Project

EXIT = {"DEPLOY": EXIT_DEPLOY, "BLOCK": EXIT_BLOCK, "NEEDS_DATA": EXIT_NEEDS_DATA, "KEPT": EXIT_DEPLOY}


def run_train(project: Project, settings: LlmSettings, *, runs: int | None, offline: bool, budget: int | None,
              dry_run: bool, policy: str | None, screen: int, validation: int, perturb: float | None,
              use_cache: bool) -> int:
    """Run ``env train`` and print its report; returns the exit code."""
    online = not offline and settings.has_key()
    if not offline and not online:
        err_console.print(f"note: no key in ${settings.api_key_env}: the local judge runs (offline)", markup=False)
    if "{system_prompt}" not in project.config.vla_finetune.prompt_template:
        err_console.print("note: vla_finetune.prompt_template has no {system_prompt}: no planner sees the prompt's "
                          "rules, so no candidate can change a mission", markup=False)
    judge = make_planner = requests = None
    label = "offline"
    if online:
        from cadenza.judge.llm_judge import llm_candidate
        from cadenza.llm.cache import ReplyCache
        from cadenza.llm.client import ChatClient
        from cadenza.llm.planner import LlmPlanner
        from cadenza.mission.runner import mission_vocabulary

        vocab = mission_vocabulary(project)[0]
        client = ChatClient(settings, ReplyCache.for_project(project.root) if use_cache else None, budget)
        label = f"llm judge {settings.model}"

        def judge(report, incumbent):  # type: ignore[no-untyped-def]
            return llm_candidate(client, report, incumbent, vocab.text())

        def make_planner():  # type: ignore[no-untyped-def]
            return LlmPlanner(vocab, client)

        def requests() -> int:
            return client.counts.requests

    opts = TrainOptions(runs=runs, offline=not online, policy=policy, screen=screen, validation=validation,
                        perturb=perturb, budget=budget, dry_run=dry_run)
    res = train_prompt(project, opts, judge=judge, make_planner=make_planner, label=label, requests=requests,
                       progress=lambda s: err_console.print(s, markup=False, soft_wrap=True))
    show(res)
    return EXIT[res.verdict]


def _pct(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {100 * k / max(n, 1):.0f}%  [{100 * lo:.0f}, {100 * hi:.0f}]"


def show(res: TrainResult) -> None:
    tag = f"\\[proxy, {escape(res.label)}, {res.policy} planner, perturb {res.perturb:g}]"
    modes = Table(title=f"env train: failure modes in {len(res.runs.missions)} missions  {tag}", title_justify="left")
    for col in ("mode", "missions", "where", "example (run, mission, step: action; what it saw)"):
        modes.add_column(col)
    for m in res.report.modes:
        ev = m.evidence[0] if m.evidence else None
        example = f"{ev.run_id} #{ev.episode} step {ev.step}: {ev.action}; {ev.detail}" if ev else ""
        modes.add_row(m.id, f"{m.missions}/{m.of}", escape(", ".join(f"{k} {v}" for k, v in m.zones.items())),
                      escape(example))
    console.print(modes)
    if res.runs.bad_lines or res.runs.unreadable:
        console.print(f"skipped {res.runs.bad_lines} bad line(s) and {len(res.runs.unreadable)} unreadable log(s)",
                      markup=False)
    for c in res.dropped:
        console.print(f"dropped candidate {c.label}: {'; '.join(c.problems)}", markup=False, soft_wrap=True)
    for m, why in res.unanswered:
        console.print(f"no rule for {m.id} ({m.missions} missions): {why}", markup=False, soft_wrap=True)
    if res.screen:
        t = Table(title=f"screening on {res.screen['incumbent'].n} of the judge's missions", title_justify="left")
        t.add_column("prompt")
        t.add_column("success [95% CI]")
        for name, s in res.screen.items():
            t.add_row(escape(name), _pct(s.k, s.n))
        console.print(t)
    if res.chosen is not None:
        for r in res.chosen.rules:
            console.print(f"rule: {r.line()}", markup=False, soft_wrap=True)
        if res.diff:
            console.print(res.diff, markup=False, soft_wrap=True)
    if res.validation:
        inc, cand = res.validation["incumbent"], res.validation["candidate"]
        t = Table(title=f"validation: {cand.n} fixed-seed missions the judge never read, paired  {tag}",
                  title_justify="left")
        for col in ("prompt", "version", "success [95% CI]", "collisions"):
            t.add_column(col)
        t.add_row("before (incumbent)", res.incumbent_version or "-", _pct(inc.k, inc.n), str(inc.collisions))
        t.add_row("after (candidate)", res.candidate_version or "-", _pct(cand.k, cand.n), str(cand.collisions))
        console.print(t)
        lo, hi = res.paired or (-1.0, 1.0)
        console.print(f"paired difference {100 * (cand.k - inc.k) / cand.n:+.1f} points, 95% interval "
                      f"[{100 * lo:+.1f}, {100 * hi:+.1f}]", markup=False)
    if res.llm_requests:
        console.print(f"llm requests: {res.llm_requests}", markup=False)
    verdict = res.verdict if res.verdict != "KEPT" else "incumbent kept"
    console.print(f"{verdict}: {res.action}", markup=False, soft_wrap=True)
