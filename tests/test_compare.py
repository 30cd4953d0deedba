"""The method comparison end to end on a tiny model with the real tokenizer (the binary's
flag handling is in test_bad_input_binaries.py)."""

import dataclasses
import json
import os

import lang_neuron_jax as lnj
from lang_neuron_jax.compare import stage as compare
from lang_neuron_jax.find import stage as find
from lang_neuron_jax import study as presets
from tests.conftest import write_small_corpus


def test_comparison_end_to_end_and_reuse(tiny_gemma3_with_tokenizer, tmp_path):
  lm = lnj.load_model(tiny_gemma3_with_tokenizer)
  corpus = write_small_corpus(str(tmp_path / "corpus"), positives=12, negatives=24)
  work = str(tmp_path / "work")
  preset = presets.COMPARE_QUICK
  config = dataclasses.replace(
      preset.compare, languages=("en", "de", "ja"), samples=3, methods=tuple(compare.METHODS),
      strengths=(("ap", (4, 20)), ("lape", (0.1,)), ("diffmean", (1.0,)), ("probe", (8.0,))))
  find_config = compare.find_config(dataclasses.replace(
      preset.find, languages=("en", "de", "ja"), corpus_dir=corpus), lm.config, config.methods)

  def run():
    found = find.find_neurons(lm, find_config, f"{work}/find", progress=False)
    return compare.run_comparison(lm, found, config, work, progress=False)

  result = run()
  compare.write_report(work, result, config, model_id=lm.model_id)
  for name in ("comparison.md", "comparison.json", "comparison.jsonl", "pareto.png",
               "method_layers.png", "find/expertise.npz", "find/responses/resid.npy",
               "find/responses/gate_act.positive.npy", "translation.jsonl",
               "translation_bleu.png"):
    assert os.path.exists(os.path.join(work, name)), name
  with open(os.path.join(work, "comparison.json")) as f:
    summary = json.load(f)
  # The baseline and 3 languages x (2 AP + 1 LAPE + 1 DiffMean + 1 probe) conditions, 3
  # samples each.
  assert len(summary["conditions"]) == 1 + 3 * 5
  assert all(v["samples"] == 3 for v in summary["conditions"].values())
  assert summary["conditions"]["de/ap/20"]["strength"] == 20
  assert set(summary["best"]) == {"ap", "lape", "diffmean", "probe"}
  assert set(summary["best"]["lape"]) == {"en", "de", "ja"}
  assert list(summary["overlap"]) == ["ap@20 vs lape@0.1"]
  assert len(summary["layers"]["diffmean"]) == lm.config.num_layers
  for m in ("diffmean", "probe"):  # one layer per language
    assert sum(summary["layers"][m]) == 3 * lm.config.width
  assert set(summary["fits"]["probe"]["layer"]) == {"en", "de", "ja"}
  # Translation: FLORES-200 into de and ja (English has no set), 2 pairs, no intervention
  # and each method at the strength chosen from its unconditional results.
  assert set(summary["translation"]) == {"flores200_en_de", "flores200_en_ja"}
  for by_role in summary["translation"].values():
    assert set(by_role) == {"baseline", "ap", "lape", "diffmean", "probe"}
    assert all(v["pairs"] == 2 and "p_valid_holm" in v for r, v in by_role.items() if r != "baseline")
  chosen = summary["translation_strengths"]
  assert chosen["ap"]["de"] in (4, 20) and chosen["lape"]["ja"] == 0.1
  assert len(result.translations) == 2 * 2 * 5
  for r in result.translations:
    if r["kind"] is not None:
      assert r["strength"] == chosen[r["kind"]][r["target"]] and r["language"] == r["target"]
  with open(os.path.join(work, "comparison.md")) as f:
    report = f.read()
  assert "Best setting per method within the fluency cost" in report and "| de/lape/0.1 |" in report
  assert "## Translation" in report and "| flores200_en_ja |" in report
  # A second run reuses every stage and gives the same records.
  with open(os.path.join(work, "comparison.jsonl")) as f:
    first = f.read()
  stamps = {n: os.path.getmtime(os.path.join(work, n)) for n in (
      "comparison.jsonl", "comparison.stage.json", "translation.jsonl", "translation.stage.json")}
  again = run()
  assert again.records == result.records and again.translations == result.translations
  for name, mtime in stamps.items():
    assert os.path.getmtime(os.path.join(work, name)) == mtime, name
  with open(os.path.join(work, "comparison.jsonl")) as f:
    assert f.read() == first
