"""How both reports write a table and a share, so ``report.md`` and ``comparison.md`` read
alike (and the README's tables, copied from them)."""

from __future__ import annotations

from typing import Sequence


def percent(x) -> str:
  """"41.2%", or "n/a" for None."""
  return "n/a" if x is None else f"{x:.1%}"


def table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
  """A Markdown table's lines."""
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
  return out


def share(value, interval, significant=False) -> str:
  """"41% [28–56%]*": a share, its 95% interval, and * where it differs from the baseline
  (Holm-adjusted exact test); "(test n/a)" where ``significant`` is None: the condition's
  samples do not pair with the baseline's, so no test ran (not "not significant")."""
  if value is None:
    return "n/a"
  mark = "*" if significant else " (test n/a)" if significant is None else ""
  return f"{value:.0%} [{interval[0]:.0%}–{interval[1]:.0%}]{mark}".replace("%–", "–")
