"""The README's "Tests" and "Bad input" sections name, for every claim, the test that
backs it; each named test file and function must exist (a renamed or deleted test would
otherwise leave a claim pointing at nothing)."""

import fnmatch
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _section(text: str, title: str) -> str:
  start = text.index(f"## {title}\n")
  end = text.find("\n## ", start + 1)
  return text[start:end if end > 0 else None]


def _tests_named(section: str) -> list[tuple[str, str | None]]:
  """``(file, function pattern or None)`` of every `test_x.py::name` / `test_x.py` /
  `::name` (the file of the reference before it) in backticks."""
  out, current = [], None
  for ref in re.findall(r"`((?:test_\w+\.py)?(?:::[\w*]+)?)`", section):
    if not ref:
      continue
    file, _, name = ref.partition("::")
    current = file or current
    assert current, f"{ref!r} names no file before it"
    out.append((current, name or None))
  return out


def test_every_test_the_readme_names_exists():
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  for title in ("Tests", "Bad input"):
    named = _tests_named(_section(readme, title))
    assert len(named) >= 15, (title, named)
    for file, name in named:
      path = os.path.join(ROOT, "tests", file)
      assert os.path.exists(path), f"README {title}: no tests/{file}"
      if name:
        with open(path) as f:
          functions = re.findall(r"^def (test_\w+)\(", f.read(), re.M)
        assert fnmatch.filter(functions, name), f"README {title}: no {file}::{name}"


def test_every_bad_input_row_names_a_test():
  with open(os.path.join(ROOT, "README.md")) as f:
    section = _section(f.read(), "Bad input")
  rows = [l for l in section.splitlines() if l.startswith("| ") and not l.startswith("| input")]
  assert len(rows) >= 15
  for row in rows:
    assert re.search(r"`test_\w+\.py", row.rsplit("|", 2)[-2]), row
