"""What every candidate prompt must keep (checked before any mission is run for it).

1. **The vocabulary**: every action of the vocabulary that the incumbent names is still named (a
   candidate may name more, never fewer), and no action outside the vocabulary is named in backticks.
2. **The output format**: every line of the incumbent that says how to answer (a line mentioning
   ``answer``, ``reply``, ``respond``, ``output``, ``format`` or ``JSON``) is kept word for word.
3. **Length**: at most ``MAX_GROWTH`` (1.5) times the incumbent's length in characters.
4. **No verbatim copy of log text**: no run of ``COPY_CHARS`` (40) characters of the lines the candidate
   adds appears in the texts the runs produced (observation summaries, raw model replies, errors,
   notes); rules are written in the judge's own words.
"""

from __future__ import annotations

import re

MAX_GROWTH = 1.5
COPY_CHARS = 40
_FORMAT = re.compile(r"\b(answer|reply|respond|output|format|json)\b", re.I)
_TICKED = re.compile(r"`([a-z]+(?:_[a-z]+)*)(?:\s[^`]*)?`")


def _names(text: str, vocab: list[str]) -> set[str]:
    return {a for a in vocab if re.search(rf"\b{re.escape(a)}\b", text)}


def format_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and _FORMAT.search(ln)]


def copied_text(added: str, log_texts: list[str], n: int = COPY_CHARS) -> str | None:
    """The first ``n``-character run of ``added`` found verbatim in ``log_texts``, or ``None``."""
    if len(added) < n or not log_texts:
        return None
    blob = "\x00".join(log_texts)
    for i in range(len(added) - n + 1):
        w = added[i:i + n]
        if "\x00" not in w and w in blob:
            return w
    return None


def check_candidate(incumbent: str, candidate: str, vocab: list[str], log_texts: list[str],
                    rule_keys: set[str] | None = None) -> list[str]:
    """Why ``candidate`` may not replace ``incumbent`` (empty: it keeps every invariant)."""
    problems = []
    lost = sorted(_names(incumbent, vocab) - _names(candidate, vocab))
    if lost:
        problems.append(f"drops action(s) from the vocabulary: {', '.join(lost)}")
    invented = sorted(set(_TICKED.findall(candidate)) - set(vocab) - set(rule_keys or ())
                      - set(_TICKED.findall(incumbent)))
    if invented:
        problems.append(f"names action(s) outside the vocabulary: {', '.join(invented)}")
    kept = set(candidate.splitlines())
    missing = [ln for ln in format_lines(incumbent) if ln not in kept]
    if missing:
        problems.append(f"changes the output-format line {missing[0].strip()[:60]!r}")
    if len(candidate) > MAX_GROWTH * max(len(incumbent), 1):
        problems.append(f"is {len(candidate)} characters, more than {MAX_GROWTH}x the incumbent's {len(incumbent)}")
    old = set(incumbent.splitlines())
    added = "\n".join(ln for ln in candidate.splitlines() if ln not in old)
    copy = copied_text(added, log_texts)
    if copy is not None:
        problems.append(f"copies log text verbatim ({copy[:40]!r})")
    return problems
