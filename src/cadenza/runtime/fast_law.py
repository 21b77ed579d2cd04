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

Three actions with a gate and a rate limit (the rescue-dog default) have a straight-line function,
no loop (for three actions that halves the cost); every other setting runs the same operations in a
loop over the action entries (measured: about 0.3 us more per call for 2 actions, 0.7 us for 8, than
straight-line code). :func:`law_source` prints the straight-line form for any action count,
for reading; nothing compiles it.

The inputs must be finite: the runtime checks them before it gets here (Python's comparisons do
not propagate NaN the way ``np.minimum`` does).
"""

from __future__ import annotations

from collections.abc import Callable

# (action, rate-limited residual term, sum of |term| over its entries, max |term|)
LawResult = tuple[list[float], list[float], float, float]
Law = Callable[[list[float], list[float], list[float]], LawResult]


def law_source(k: int, *, gate: bool, rate_limit: bool) -> str:
    """The straight-line text of ``law(a_base, u, prev)`` for ``k`` actions: the operations, in their
    order, that :func:`make_law`'s functions run (for reading; nothing compiles it)."""
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
    if k < 1:
        raise ValueError(f"the action needs at least one entry, got {k}")
    alpha_, low_, high_ = float(alpha), float(low), float(high)
    if k == 3 and gate and rate_limit is not None:
        return _law3_gated_limited(alpha_, float(rate_limit), low_, high_)
    return _law_any(int(k), alpha_, gate, None if rate_limit is None else float(rate_limit), low_, high_)


def _law3_gated_limited(ALPHA: float, RATE: float, LOW: float, HIGH: float) -> Law:
    def law(a_base: list[float], u: list[float], prev: list[float]) -> LawResult:
        b0, b1, b2 = a_base
        x0, x1, x2, g = u
        p0, p1, p2 = prev
        g = 0.0 if g < 0.0 else (1.0 if g > 1.0 else g)
        x0, x1, x2 = ((-1.0 if x0 < -1.0 else (1.0 if x0 > 1.0 else x0)) * g,
                      (-1.0 if x1 < -1.0 else (1.0 if x1 > 1.0 else x1)) * g,
                      (-1.0 if x2 < -1.0 else (1.0 if x2 > 1.0 else x2)) * g)
        lo0, lo1, lo2 = p0 - RATE, p1 - RATE, p2 - RATE
        hi0, hi1, hi2 = p0 + RATE, p1 + RATE, p2 + RATE
        x0 = lo0 if x0 < lo0 else (hi0 if x0 > hi0 else x0)
        x1 = lo1 if x1 < lo1 else (hi1 if x1 > hi1 else x1)
        x2 = lo2 if x2 < lo2 else (hi2 if x2 > hi2 else x2)
        a0, a1, a2 = b0 + ALPHA * x0, b1 + ALPHA * x1, b2 + ALPHA * x2
        m0, m1, m2 = (x0 if x0 >= 0.0 else -x0), (x1 if x1 >= 0.0 else -x1), (x2 if x2 >= 0.0 else -x2)
        peak = m0
        if m1 > peak:
            peak = m1
        if m2 > peak:
            peak = m2
        return ([LOW if a0 < LOW else (HIGH if a0 > HIGH else a0), LOW if a1 < LOW else (HIGH if a1 > HIGH else a1),
                 LOW if a2 < LOW else (HIGH if a2 > HIGH else a2)], [x0, x1, x2], m0 + m1 + m2, peak)

    return law


def _law_any(k: int, ALPHA: float, gate: bool, RATE: float | None, LOW: float, HIGH: float) -> Law:
    def law(a_base: list[float], u: list[float], prev: list[float]) -> LawResult:
        g = 1.0
        if gate:
            g = u[k]
            g = 0.0 if g < 0.0 else (1.0 if g > 1.0 else g)
        action: list[float] = []
        delta: list[float] = []
        total = peak = 0.0
        for i in range(k):
            x = u[i]
            x = -1.0 if x < -1.0 else (1.0 if x > 1.0 else x)
            if gate:
                x = x * g
            if RATE is not None:
                lo, hi = prev[i] - RATE, prev[i] + RATE
                x = lo if x < lo else (hi if x > hi else x)
            a = a_base[i] + ALPHA * x
            action.append(LOW if a < LOW else (HIGH if a > HIGH else a))
            delta.append(x)
            m = x if x >= 0.0 else -x
            if i == 0:
                total = peak = m  # not 0.0 + m: that would turn a -0.0 into 0.0
            else:
                total = total + m
                if m > peak:
                    peak = m
        return action, delta, total, peak

    return law


def clamp(values: list[float], low: float, high: float) -> list[float]:
    """``np.clip(values, low, high)`` for finite floats."""
    return [low if v < low else (high if v > high else v) for v in values]
