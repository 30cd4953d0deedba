"""Overlap, distributions, the sufficiency classifier and figures."""

import os

import numpy as np

from lang_neuron_jax.neurons import analysis, selection
from lang_neuron_jax.report import figures
from tests.test_selection import toy_expertise


def test_overlap_and_distributions():
  exp = toy_expertise()
  en = selection.select(exp, "en", 3, "top")
  de = selection.select(exp, "de", 3, "top")
  m = analysis.overlap_matrix([en, de])
  assert m[0, 0] == m[1, 1] == 1.0
  assert m[0, 1] == len(set(en.flat) & set(de.flat)) / 3
  assert analysis.layer_distribution(en).sum() == 3
  assert analysis.site_distribution(en).shape == (2,)


def test_gather_responses():
  exp = toy_expertise()
  s = selection.select(exp, "en", 2, "both")
  resp = {"q": np.random.rand(5, 2, 3).astype(np.float32),
          "up": np.random.rand(5, 2, 4).astype(np.float32)}
  got = analysis.gather_responses(resp, s)
  for i in range(len(s)):
    site = exp.index.sites[s.site[i]]
    np.testing.assert_array_equal(got[:, i], resp[site][:, s.layer[i], s.unit[i]])


def test_classifier_separates_informative_features_only():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(3), 100)
  informative = rng.normal(size=(300, 4)) + np.eye(3, 4)[labels] * 3
  noise = rng.normal(size=(300, 4))
  assert analysis.classifier_accuracy(informative, labels) > 0.9
  assert analysis.classifier_accuracy(noise, labels) < 0.6


def test_figures_are_written(tmp_path):
  langs = ["en", "de"]
  paths = [
      figures.overlap_heatmap(np.eye(2), langs, str(tmp_path / "o.png")),
      figures.layer_distribution({"en": np.arange(4), "de": np.ones(4)}, str(tmp_path / "l.png")),
      figures.site_distribution({"en": np.arange(2)}, ["q", "up"], str(tmp_path / "s.png")),
      figures.ap_histograms({"en": np.random.rand(100)}, str(tmp_path / "a.png")),
      figures.share_vs_n({"de": {2: (0.1, [0.02, 0.3]), 20: (0.5, [0.3, 0.7])}},
                         {"de": {2: (0.05, [0.0, 0.2]), 20: (0.4, [0.2, 0.6])}},
                         str(tmp_path / "n.png"), baseline={"de": (0.05, 0.05)}),
      figures.paired_bars({"flores": {"with": (10.0, [8.0, 12.0]), "without": (5.0, [4.0, 6.0])},
                           "wmt": {"with": (3.0, [1.0, 4.0])}},
                          str(tmp_path / "b.png"), ylabel="BLEU", title="t"),
  ]
  for p in paths:
    with open(p, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(p) > 1000
