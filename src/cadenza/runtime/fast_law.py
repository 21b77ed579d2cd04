"""The control law for one robot's step, on plain Python floats (the safe runtime's per-step path).

:func:`cadenza.residual.control_law.control_law` is the reference (training, evaluation and the
distillation teacher use it, on batches). For a single robot its numpy form is about a dozen ufunc
calls on 3-element arrays, each of which costs far more than its arithmetic; the same operations on
the Python floats of a ``tolist()`` cost a fraction of that. The operations and their order are
those of ``control_law`` in float64::

    d = clip(u[:k], -1, 1) * clip(u[k], 0, 1)            # gate, when the head has one
    d = clip(d, prev - rate_limit, prev + rate_limit)     # rate limit, when set
    a = clip(a_base + alpha * d, low, high)

so for finite float64 inputs the result equals ``control_law``'s bit for bit (tested on random
inputs, clamping edges included). ``control_law`` given a float32 ``u`` clips and gates in float32;
here that part is float64, so the two differ by float32 rounding (below 1e-7).

The function is written out once per action size, gate and rate-limit setting (straight-line code,
no loop: for three actions that halves its cost), from a template that holds no value but the action
count; alpha, the rate limit and the bounds are bound as constants of its namespace.

The inputs must be finite: the runtime checks them before it gets here (Python's comparisons do
not propagate NaN the way ``np.minimum`` does).
"""

from __future__ import annotations

from collections.abc import Callable

# (action, rate-limited residual term, sum of |term| over its entries, max |term|)
LawResult = tuple[list[float], list[float], float, float]
Law = Callable[[list[float], list[float], list[float]], LawResult]


def law_source(k: int, *, gate: bool, rate_limit: bool) -> str:
    """The text of ``law(a_base, u, prev)`` for ``k`` actions (see :func:`make_law`)."""
    if k < 1:
        raise ValueError(f"the action needs at least one entry, got {k}")
    idx = range(k)

    def names(prefix: str) -> str:
        return "".join(f"{prefix}{i}, " for i in idx)

    lines = ["def law(a_base, u, prev):", f"    {names('b')}= a_base", f"    {names('x')}{'g, ' if gate else ''}= u"]
    if rate_limit:
        lines.append(f"    {names('p')}= prev")
    if gate:
        lines.append("    g = 0.0 if g < 0.0 else (1.0 if g > 1.0 else g)")
    for i in idx:
        lines.append(f"    x{i} = -1.0 if x{i} < -1.0 else (1.0 if x{i} > 1.0 else x{i})")
        if gate:
            lines.append(f"    x{i} = x{i} * g")
        if rate_limit:
            lines += [f"    lo = p{i} - RATE", f"    hi = p{i} + RATE",
                      f"    x{i} = lo if x{i} < lo else (hi if x{i} > hi else x{i})"]
        lines += [f"    a{i} = b{i} + ALPHA * x{i}",
                  f"    a{i} = LOW if a{i} < LOW else (HIGH if a{i} > HIGH else a{i})",
                  f"    m{i} = x{i} if x{i} >= 0.0 else -x{i}"]
    lines.append("    peak = m0")
    for i in idx[1:]:
        lines.append(f"    if m{i} > peak: peak = m{i}")
    total = " + ".join(f"m{i}" for i in idx)
    lines.append(f"    return [{names('a')}], [{names('x')}], {total}, peak")
    return "\n".join(lines) + "\n"


def make_law(k: int, *, alpha: float, gate: bool, rate_limit: float | None, low: float = -1.0,
             high: float = 1.0) -> Law:
    """``law(a_base, u, prev) -> (action, delta, sum |delta|, max |delta|)`` over lists of floats.

    ``a_base`` and ``prev`` have ``k`` entries, ``u`` exactly ``k`` (+1 gate when ``gate``); ``prev``
    is the ``delta`` of the previous step (zeros after a reset or a step without the correction).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if rate_limit is not None and rate_limit < 0:
        raise ValueError(f"rate_limit must be >= 0, got {rate_limit}")
    namespace = {"ALPHA": float(alpha), "RATE": None if rate_limit is None else float(rate_limit),
                 "LOW": float(low), "HIGH": float(high)}
    code = compile(law_source(int(k), gate=gate, rate_limit=rate_limit is not None), f"<cadenza law k={k}>", "exec")
    exec(code, namespace)  # the text comes from law_source alone: no user input reaches it
    law: Law = namespace["law"]  # type: ignore[assignment]
    return law


def clamp(values: list[float], low: float, high: float) -> list[float]:
    """``np.clip(values, low, high)`` for finite floats."""
    return [low if v < low else (high if v > high else v) for v in values]
