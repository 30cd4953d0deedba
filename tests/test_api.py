"""The public API: documented names, and the README's Python example run on a tiny model."""

import os
import re
import shutil

import lang_neuron_jax as lnj
from tests.conftest import write_small_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_public_name_has_a_docstring():
  missing = [n for n in lnj.__all__
             if not isinstance(getattr(lnj, n), (str, tuple)) and not getattr(lnj, n).__doc__]
  assert not missing, missing


def test_readme_python_example_runs(tiny_gemma3_with_tokenizer, tmp_path, monkeypatch):
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  code = re.search(r"## Use it from Python\n.*?```python\n(.*?)```", readme, re.S).group(1)
  # The same code on a tiny model (448 neurons) and a temp directory.
  code = code.replace('"gemma3-270m"', repr(tiny_gemma3_with_tokenizer))
  code = code.replace('"workdir/find"', repr(str(tmp_path / "find")))
  code = code.replace('"de", 2000, "both"', '"de", 100, "both"')
  code = code.replace("lnj.FindConfig()", "lnj.FindConfig(n=40)")
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  assert os.path.exists(tmp_path / "find" / "expertise.npz")

  # The second example: your own model and languages (here sw and yo files made from
  # the shipped de and ja lists), run after the first as a reader would.
  own = re.search(r"Nothing assumes the embedded model.*?```python\n(.*?)```", readme,
                  re.S).group(1)
  source = write_small_corpus(str(tmp_path / "source"))
  os.makedirs(tmp_path / "my_corpora")
  for theirs, ours in (("en", "en"), ("de", "sw"), ("ja", "yo")):
    shutil.copy(os.path.join(source, f"{theirs}.json"), tmp_path / "my_corpora" / f"{ours}.json")
  own = own.replace('n=100', 'n=10').replace('"sw", 50, "top"', '"sw", 5, "top"')
  exec(compile(own, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  found = namespace["mine_found"]
  assert found.expertise.languages == ("en", "sw", "yo")
  assert namespace["my_lm"].config.num_layers == 2
  assert os.path.exists(tmp_path / "workdir" / "mine" / "expertise.npz")


def test_binaries_doc_lape_example_runs(tiny_gemma3_with_tokenizer, tmp_path):
  with open(os.path.join(ROOT, "docs", "binaries.md")) as f:
    doc = f.read()
  code = re.search(r"From Python, for one language and strength:\n\n```python\n(.*?)```", doc,
                   re.S).group(1)
  # The same code on a tiny model, three of the shipped languages and a temp directory.
  corpus = write_small_corpus(str(tmp_path / "corpus"), positives=20, negatives=40)
  code = code.replace("find.FindConfig(positives_per_language=100)",
                      f"find.FindConfig(positives_per_language=20, corpus_dir={corpus!r}, "
                      "languages=('en', 'de', 'ja'))")
  code = code.replace('"workdir/lape"', repr(str(tmp_path / "lape")))
  namespace = {"lm": lnj.load_model(tiny_gemma3_with_tokenizer)}
  exec(compile(code, "docs/binaries.md", "exec"), namespace)  # pylint: disable=exec-used
  assert set(namespace["edit"].edits) == {"gate_act"}
  assert namespace["fitted"].languages == ("en", "de", "ja")
