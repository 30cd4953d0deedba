"""Reading the reports' tables back, to check their cells against the metrics they print.

The README's tables are copied from ``report.md`` and ``comparison.md``; these helpers
parse a cell ("41% [28–56%]*", "12% [3–36%] @ 200", "5.6 [5.1–6.2]") into numbers and
a mark, independently of the code that wrote it, so a test can compare every cell with
``metrics.json`` / ``comparison.json``.
"""

from __future__ import annotations

import re

import pytest

# report.md's shares: "41% [28–56%]" + "*" (significant) or " (test n/a)" (not tested).
_STUDY_SHARE = re.compile(r"^(\d+)% \[(\d+)–(\d+)%\](\*| \(test n/a\))?$")
# comparison.md's shares: the same (one formatter writes both reports), then " @ strength"
# in the best-setting table.
_COMPARE_SHARE = re.compile(r"^(\d+)% \[(\d+)–(\d+)%\](\*| \(test n/a\))?(?: @ (\S+))?$")
# A number with an interval: "5.6 [5.1–6.2]" (perplexity, BLEU, chrF).
_SCORE = re.compile(r"^(-?[\d.]+) \[(-?[\d.]+)–(-?[\d.]+)\]$")


def table(text: str, header_start: str) -> tuple[list[str], dict[str, list[str]]]:
  """The first Markdown table whose header row starts with ``header_start``: its header
  cells and ``{first cell: cells}`` of its rows."""
  lines = text.splitlines()
  for i, line in enumerate(lines):
    if line.startswith(header_start) and i + 1 < len(lines) and lines[i + 1].startswith("|-"):
      header = [c.strip() for c in line.strip().strip("|").split("|")]
      rows = {}
      for row in lines[i + 2:]:
        if not row.startswith("|"):
          break
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        rows[cells[0]] = cells
      return header, rows
  raise AssertionError(f"No table starting {header_start!r}")


def _mark(mark: str | None) -> bool | None:
  return {None: False, "*": True, " (test n/a)": None}[mark]


def check_share(cell: str, share: float, interval, significant=False, *,
                style: str = "study") -> str | None:
  """Asserts that ``cell`` shows ``share`` and ``interval`` (whole percents, each within
  rounding) and the mark of ``significant`` (True "*", None "(test n/a)", False nothing).
  Returns the strength after "@" (comparison.md's best settings), if any."""
  m = (_STUDY_SHARE if style == "study" else _COMPARE_SHARE).match(cell)
  assert m, f"unparsable share cell {cell!r}"
  value, low, high = (int(g) for g in m.groups()[:3])
  for shown, exact in ((value, share), (low, interval[0]), (high, interval[1])):
    assert abs(shown - 100 * exact) <= 0.5 + 1e-9, (cell, share, interval)
  assert _mark(m.group(4)) == significant, (cell, significant)
  return m.group(5) if style == "compare" else None


def check_score(cell: str, value: float, interval) -> None:
  """Asserts that ``cell`` ("5.6 [5.1–6.2]") shows ``value`` and ``interval`` to one
  decimal."""
  m = _SCORE.match(cell)
  assert m, f"unparsable score cell {cell!r}"
  assert [float(g) for g in m.groups()] == pytest.approx([value, *interval], abs=0.0501), cell


def _label(kind: str, n: int) -> str:
  return {"both": f"N={n:,}", "top": f"top {n:,} only", "bottom": f"bottom {n:,} only",
          "random": f"random {n:,}"}[kind]


def check_study_report(text: str, metrics: dict) -> int:
  """Checks every cell of report.md's target and valid share tables and its translation
  shares against ``metrics.json``; returns the number of cells checked."""
  uncond = metrics["unconditional"]
  checked = 0
  for field, anchor in (("target", "Share of samples in the target language"),
                        ("valid", "Share of **valid**")):
    header, rows = table(text[text.index(anchor):], "| target |")
    for lang, row in rows.items():
      base = uncond["baseline"]["by_language"][lang]
      check_share(row[1], base[f"{field}_share"], base[f"{field}_share_ci"])
      by_label = {_label(c["kind"], c["n"]): c for c in uncond.values() if c["language"] == lang}
      for label, cell in zip(header[2:], row[2:]):
        c = by_label[label]
        check_share(cell, c[f"{field}_share"], c[f"{field}_share_ci"], c[f"significant_{field}"])
        checked += 1
  if metrics["translation"]:
    header, rows = table(text, "| set |")
    for key, row in rows.items():
      cells = dict(zip(header, row))
      t = metrics["translation"][key]
      for col, role, field in (("in target", "baseline", "target"), ("valid", "baseline", "valid"),
                               ("valid (intervention)", "intervention", "valid")):
        v = t[role]
        check_share(cells[col], v[f"{field}_share"], v[f"{field}_share_ci"],
                    v.get(f"significant_{field}", False))
        checked += 1
      for col, role, metric in (("BLEU (intervention)", "intervention", "bleu"),
                                ("chrF", "baseline", "chrf")):
        check_score(cells[col], t[role][metric], t[role][f"{metric}_ci"])
  return checked


def check_comparison_report(text: str, summary: dict, methods, languages) -> int:
  """Checks comparison.md's best-setting tables (held out: ``best``; choosing half:
  ``chosen_on``), the held-out broken shares with their cost flags and the
  every-condition table against ``comparison.json``; returns the number of cells
  checked."""
  checked = 0
  for header, part in (("| method |", "best"), ("| method, choosing half |", "chosen_on")):
    _, rows = table(text, header)
    for m in methods:
      for lang, cell in zip(languages, rows[m][1:]):
        b = summary[part][m][lang]
        if b is None:
          assert cell == "none within cost", cell
          continue
        strength = check_share(cell, b["valid_share"], b["valid_share_ci"],
                               b["significant_valid"], style="compare")
        assert float(strength) == b["strength"], (cell, b)
        checked += 1
  # The held-out broken shares, flagged "(over the cost)" exactly where comparison.json's
  # within_cost (evaluation.cost.within_cost at the config's bound) says so.
  _, rows = table(text, "| method, held-out broken share |")
  for m in methods:
    for lang, cell in zip(languages, rows[m][1:]):
      b = summary["best"][m][lang]
      if b is None:
        assert cell == "-", cell
        continue
      shown = cell.removesuffix(" (over the cost)")
      check_share(shown, b["broken_share"], b["broken_share_ci"], style="compare")
      assert (shown != cell) == (not b["within_cost"]), (cell, b["within_cost"])
      checked += 1
  _, rows = table(text, "| condition |")
  cond = summary["conditions"]
  assert set(rows) == {k for k, v in cond.items() if v["kind"] is not None}
  for name, row in rows.items():
    c = cond[name]
    for col, field in ((1, "target"), (2, "valid")):
      check_share(row[col], c[f"{field}_share"], c[f"{field}_share_ci"],
                  c[f"significant_{field}"], style="compare")
      checked += 1
  return checked
