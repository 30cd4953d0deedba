"""N as the authors count it: their make_limited_expert.py, applied with pandas to the
scores of the shipped corpora on a tiny model, selects the same neurons as ``select``.

The rule, from kojima-takeshi188/lang_neuron scripts/make_limited_expert.py:
``top = df.sort_values('ap', ascending=False).head(int(N/2))``, ``bottom =
df.sort_values('ap', ascending=True).head(int(N/2))``, ``both = concat([top, bottom])``.
pandas' default sort is not stable, so inside a group of equal AP its order is
unspecified; there the comparison accepts any members of the tied group.
"""

import os

import numpy as np
import pandas as pd
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.control import conditions
from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.find import stage as find
from lang_neuron_jax.neurons import selection


def make_limited_expert(df: pd.DataFrame, threshold: int):
  """The authors' function, minus its file handling."""
  df2 = df.sort_values("ap", ascending=False).head(int(threshold / 2))
  df3 = df.sort_values("ap", ascending=True).head(int(threshold / 2))
  return df2, df3, pd.concat([df2, df3], axis=0, ignore_index=True)


def assert_same_rows_up_to_ties(ours: pd.DataFrame, theirs: pd.DataFrame):
  """Same number of rows and the same AP sequence; the same neurons except inside the
  group of AP tied at the cut."""
  assert len(ours) == len(theirs)
  # The CSV holds float32 AP with 9 significant digits, which round-trip exactly.
  ap = lambda df: df["ap"].to_numpy().astype(np.float32)
  np.testing.assert_array_equal(ap(ours), ap(theirs))
  key = lambda df: set(zip(df["site"], df["layer"], df["unit"]))
  both = pd.concat([ours, theirs])
  tied = key(both[ap(both) == ap(theirs)[-1]])
  differ = key(ours) ^ key(theirs)
  assert differ <= tied, sorted(differ - tied)[:5]


@pytest.fixture(scope="module")
def found(tiny_gemma3_with_tokenizer, tmp_path_factory):
  lm = lnj.load_model(tiny_gemma3_with_tokenizer)
  workdir = str(tmp_path_factory.mktemp("reference_selection"))
  result = find.find_neurons(lm, find.FindConfig(n=200, batch_size=64), workdir, progress=False)
  return result, workdir


def test_both_sets_have_n_neurons_half_from_each_end_as_the_authors(found):
  result, workdir = found
  exp = result.expertise
  assert exp.languages == data.PAPER_LANGUAGES
  assert len(result.corpus.texts) > 5000  # the shipped corpora, all six languages
  for lang in exp.languages:
    df = pd.read_csv(os.path.join(workdir, "expertise", f"{lang}.csv"))
    assert len(df) == exp.index.size
    for n in sorted({selection.cap_n(n, exp.index.size, "both")
                     for n in conditions.UNCONDITIONAL_NS}):
      ours = selection.select(exp, lang, n, "both")
      assert len(ours) == n and len(set(ours.flat.tolist())) == n
      top, bottom = ours.ap[:n // 2], ours.ap[n // 2:]
      assert top.min() >= np.delete(exp.ap[exp.language_row(lang)], ours.flat[:n // 2]).max()
      assert bottom.max() <= np.delete(exp.ap[exp.language_row(lang)], ours.flat[n // 2:]).min()
      their_top, their_bottom, their_both = make_limited_expert(df, n)
      ours_df = pd.DataFrame({"ap": ours.ap.astype(np.float64),
                              "site": np.asarray(exp.index.sites)[ours.site],
                              "layer": ours.layer, "unit": ours.unit})
      assert_same_rows_up_to_ties(ours_df.iloc[:n // 2], their_top)
      assert_same_rows_up_to_ties(ours_df.iloc[n // 2:], their_bottom)
      assert len(their_both) == n


def test_written_limited_files_are_the_authors_files(found):
  result, workdir = found
  exp = result.expertise
  for lang in exp.languages:
    full = pd.read_csv(os.path.join(workdir, "expertise", f"{lang}.csv"))
    their_top, their_bottom, their_both = make_limited_expert(full, 200)
    names = find.limited_file_names(200)
    assert names == {"both": "expertise_limited_200_both.csv",
                     "top": "expertise_limited_100_top.csv",
                     "bottom": "expertise_limited_100_bottom.csv"}
    for kind, theirs in (("both", their_both), ("top", their_top), ("bottom", their_bottom)):
      ours = pd.read_csv(os.path.join(workdir, "expertise", lang, names[kind]))
      assert list(ours.columns) == list(full.columns)
      if kind == "both":
        assert_same_rows_up_to_ties(ours.iloc[:100], their_top)
        assert_same_rows_up_to_ties(ours.iloc[100:], their_bottom)
      else:
        assert_same_rows_up_to_ties(ours, theirs)
