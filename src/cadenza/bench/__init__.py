"""The bench: residual RL on a frozen base against full RL from scratch, on samples, compute, dollars and accuracy.

``cadenza env residual bench`` runs every arm (``residual``, ``full``, ``sb3``) for the same env-step
budget over several seeds, evaluates each periodically on held-out episodes at the target level, then
prices the compute (:mod:`cadenza.bench.cost`), judges the result (:mod:`cadenza.bench.verdict`) and
writes ``report.md``, ``report.json`` and ``curves.png`` (:mod:`cadenza.bench.report`,
:mod:`cadenza.bench.plot`). The measuring rules are in ``docs/bench.md``.
"""
