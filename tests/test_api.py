"""The public API: documented names, and the README's Python example run on a tiny model."""

import os
import re

import lang_neuron_jax as lnj

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_public_name_has_a_docstring():
  missing = [n for n in lnj.__all__
             if not isinstance(getattr(lnj, n), (str, tuple)) and not getattr(lnj, n).__doc__]
  assert not missing, missing


def test_readme_python_example_runs(tiny_gemma3_with_tokenizer, tmp_path, monkeypatch):
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  code = re.search(r"## Use it from Python\n.*?```python\n(.*?)```", readme, re.S).group(1)
  # The same code on a tiny model (its 448 neurons allow N up to 224) and a temp directory.
  code = code.replace('"gemma3-270m"', repr(tiny_gemma3_with_tokenizer))
  code = code.replace('"workdir/find"', repr(str(tmp_path / "find")))
  code = code.replace('"de", 1000, "both"', '"de", 100, "both"')
  code = code.replace("find.FindConfig()", "find.FindConfig(top_n=20)")
  monkeypatch.chdir(tmp_path)
  exec(compile(code, "README.md", "exec"), {})  # pylint: disable=exec-used
  assert os.path.exists(tmp_path / "find" / "expertise.npz")
