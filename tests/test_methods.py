"""Methods of finding and steering a language: statistics against direct NumPy
implementations, interventions as data, no recompilation across methods and strengths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.generation import sampling
from lang_neuron_jax.models.activations import capture_taps, pooled_taps
from lang_neuron_jax.methods import base, diffmean
from tests.test_decoder import tiny_config


@pytest.fixture(scope="module")
def tiny():
  cfg = tiny_config(eos_token_id=66)
  params = lnj.Decoder(cfg).init(jax.random.key(7), jnp.zeros((1, 1), jnp.int32))["params"]
  return cfg, params


def test_positive_counts_equal_numpy_over_captured_taps(tiny):
  cfg, params = tiny
  ids = jax.random.randint(jax.random.key(1), (3, 9), 0, 67)
  lengths = [9, 6, 2]
  mask = jnp.arange(9)[None, :] < jnp.asarray(lengths)[:, None]
  _, taps = capture_taps(lnj.Decoder(cfg), params, ids, sites=("gate_act", "resid"))
  pooled = pooled_taps(cfg, params, ids, mask, sites=("resid",), positive_sites=("gate_act",))
  counts = np.asarray(pooled["gate_act.positive"])  # [B, L, F]
  for r, n in enumerate(lengths):
    want = (np.asarray(taps["gate_act"][r, :n]) > 0).sum(axis=0)  # [L, F]
    assert np.array_equal(counts[r], want)
    np.testing.assert_allclose(np.asarray(pooled["resid"][r]),
                               np.asarray(taps["resid"][r, :n]).mean(axis=0), rtol=1e-5, atol=1e-5)
  assert 0 < counts.sum() < sum(lengths) * counts.shape[1] * counts.shape[2]  # not trivial


def stats_from(resp, language_of_text, languages, widths, positive=None, lengths=None):
  M = len(language_of_text)
  return base.CorpusStatistics(
      languages=tuple(languages), language_of_text=np.asarray(language_of_text),
      responses=resp, positive=positive or {},
      lengths=np.full(M, 10) if lengths is None else lengths, site_widths=widths,
      num_layers=next(iter(resp.values())).shape[1])


def test_diffmean_vectors_equal_a_plain_mean_difference_and_the_layer_rule():
  rng = np.random.RandomState(0)
  M, L, D, C = 40, 3, 5, 3
  lang = np.arange(M) % C
  resid = rng.randn(M, L, D).astype(np.float32)
  resid[lang == 1, 2, 0] += 6.0  # language 1 is far apart at layer 2 only
  fitted = diffmean.DiffMean().fit(stats_from({"resid": resid}, lang, ["a", "b", "c"],
                                              {"resid": D}))
  for c in range(C):
    for l in range(L):
      inside = [resid[i, l] for i in range(M) if lang[i] == c]
      outside = [resid[i, l] for i in range(M) if lang[i] != c]
      want = sum(inside) / len(inside) - sum(outside) / len(outside)
      np.testing.assert_allclose(fitted.directions[c, l], want, rtol=1e-5, atol=1e-6)
  assert fitted.layer["b"] == 2
  steer = fitted.steer("b", 2.5)
  mask, scale, shift = steer.edits["resid"]
  assert mask[2].all() and not mask[:2].any() and (scale == 1).all()
  np.testing.assert_allclose(shift[2], 2.5 * fitted.directions[1, 2])
  assert fitted.layers("b", 2.5).tolist() == [0, 0, D]


def test_probe_equals_sklearn_logistic_regression_and_the_layer_rule():
  """The optax L-BFGS probe reaches sklearn's LogisticRegression(C) optimum (ITI's probe),
  also with class_weight="balanced"; the AUC equals sklearn's. On one language against
  nine times as many others, beside a dimension 3,000 times wider (issue 30's residual
  stream), the rule takes the layer where the language ranks above the others (AUC), not
  the one where ITI's accuracy rule would go (layer 0, where a third of it stands out);
  the direction leaves the wide dimension alone; the steer adds alpha * spread * unit
  direction at that layer only."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.metrics import roc_auc_score
  from lang_neuron_jax.methods import probe

  rng = np.random.RandomState(0)
  x = rng.randn(300, 8).astype(np.float32)
  y = (x @ rng.randn(8) + rng.randn(300) > 1.5).astype(np.float32)  # about 1 in 7 positive
  for c, weighting in ((1.0, None), (0.1, None), (1.0, "balanced")):
    # Ones rather than None: one compilation serves all three fits.
    weights = np.ones_like(y) if weighting is None else probe.balanced_weights(y)
    w, b, count, largest = probe.train_probe(x, y, c, weights, tol=1e-7)
    want = LogisticRegression(C=c, class_weight=weighting, tol=1e-10, max_iter=10_000).fit(x, y)
    assert 0 < int(count) < 1000 and float(largest) < 1e-6
    np.testing.assert_allclose(np.asarray(w), want.coef_[0], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(float(b), want.intercept_[0], rtol=1e-3, atol=1e-4)
  scores = np.round(x[:, 0], 1)  # with ties
  assert probe.roc_auc(scores, y) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)

  rng = np.random.RandomState(1)
  M, L, D = 400, 3, 6
  lang = np.where(np.arange(M) % 10 == 0, 1, 0)  # "b": one text in ten
  resid = rng.randn(M, L, D).astype(np.float32)
  resid[:, :, 0] *= 3000.0  # a wide dimension that carries nothing
  b = np.flatnonzero(lang == 1)
  resid[b[::3], 0, 4] += 8.0  # layer 0: a third of "b" stands out, the rest does not
  resid[b, 2, 3] += 1.5  # layer 2: all of "b" shifted, overlapping the others
  held_out = probe.validation_mask(lang)
  assert held_out.sum() == 80 and held_out[lang == 1].sum() == 8
  fitted = probe.LinearProbe().fit(stats_from({"resid": resid}, lang, ["a", "b"],
                                              {"resid": D}))
  # (ITI's unweighted probes on the raw stream, ranked by accuracy, chose layer 0 here:
  # 0.94 there against 0.89 at layer 2.)
  assert fitted.layer["b"] == 2 and fitted.auc[1, 2] > 0.8 > fitted.auc[1, 0]
  unit = fitted.directions[1, 2]
  assert np.isclose(np.linalg.norm(unit), 1.0) and np.argmax(np.abs(unit)) == 3 and unit[3] > 0
  assert abs(unit[0]) < 1e-3  # the probe's normal in raw coordinates: w / scale
  np.testing.assert_allclose(fitted.spread[1, 2], np.std(resid[:, 2] @ unit), rtol=1e-5)
  mask, scale, shift = fitted.steer("b", 3.0).edits["resid"]
  assert mask[2].all() and not mask[:2].any() and (scale == 1).all()
  np.testing.assert_allclose(shift[2], 3.0 * fitted.spread[1, 2] * unit, rtol=1e-6)
  assert fitted.layers("b", 3.0).tolist() == [0, 0, D]
  assert set(fitted.summary()["validation_auc"]) == {"a", "b"}


def test_probe_bad_input():
  from lang_neuron_jax.methods import probe

  stats = stats_from({"resid": np.zeros((4, 2, 3), np.float32)}, [0, 1, 0, 1], ["a", "b"],
                     {"resid": 3})
  with pytest.raises(ValueError, match="out of range"):
    probe.LinearProbe(layer=2).fit(stats)
  with pytest.raises(ValueError, match="positive finite"):
    probe.LinearProbe(c=0.0)
  with pytest.raises(ValueError, match="max_iter"):
    probe.LinearProbe(max_iter=0)
  with pytest.raises(ValueError, match="'a' needs at least 5 texts"):
    probe.LinearProbe().fit(stats)
  rng = np.random.RandomState(0)
  enough = stats_from({"resid": rng.randn(10, 2, 3).astype(np.float32)}, [0, 1] * 5,
                      ["a", "b"], {"resid": 3})
  with pytest.raises(ValueError, match="Unknown language"):
    probe.LinearProbe(max_iter=5).fit(enough).steer("zz", 1.0)


def test_diffmean_bad_input():
  resid = np.zeros((4, 2, 3), np.float32)
  stats = stats_from({"resid": resid}, [0, 1, 0, 1], ["a", "b"], {"resid": 3})
  with pytest.raises(ValueError, match="out of range"):
    diffmean.DiffMean(layer=2).fit(stats)
  with pytest.raises(ValueError, match="integer"):
    diffmean.DiffMean(layer=1.5)
  with pytest.raises(ValueError, match="finite"):
    diffmean.DiffMean().check_strength(float("nan"))
  with pytest.raises(ValueError, match="Unknown language"):
    diffmean.DiffMean().fit(stats).steer("zz", 1.0)
  from lang_neuron_jax.methods import ap
  with pytest.raises(ValueError, match="even integer"):
    ap.APNeurons().check_strength(3)


def test_stack_steers_mixes_rows_and_leaves_others_untouched():
  shapes = {"up": (2, 4), "resid": (2, 3)}
  fix = base.Steer.fix("up", (2, 4), np.array([1]), np.array([2]), np.array([7.0]))
  add = base.Steer.add("resid", (2, 3), 0, np.array([1.0, 2.0, 3.0]))
  iv = base.stack_steers([fix, None, add], shapes)
  up, resid = iv.edits["up"], iv.edits["resid"]
  assert up.mask.shape == (3, 2, 4) and resid.mask.shape == (3, 2, 3)
  assert np.asarray(up.mask).sum() == 1 and bool(up.mask[0, 1, 2])
  assert float(up.scale[0, 1, 2]) == 0.0 and float(up.shift[0, 1, 2]) == 7.0
  assert np.asarray(resid.mask[2, 0]).all() and not np.asarray(resid.mask[:2]).any()
  assert np.asarray(resid.shift[2, 0]).tolist() == [1.0, 2.0, 3.0]
  with pytest.raises(ValueError, match="not in"):
    base.stack_steers([add], {"up": (2, 4)})


def torch_identify(over_zero, n, top_rate):
  """RUCAIBox/Language-Specific-Neurons identify.py (fdeca23) lines 19-50, with
  ``top_rate`` as a parameter: ``over_zero`` int ``[L, I, K]``, ``n`` ``[K]``. Returns
  ``{language index: sorted [(layer, unit)]}``."""
  import torch

  over_zero, n = torch.tensor(over_zero), torch.tensor(n)
  filter_rate, activation_bar_ratio = 0.95, 0.95
  activation_probs = over_zero / n
  normed_activation_probs = activation_probs / activation_probs.sum(dim=-1, keepdim=True)
  normed_activation_probs[torch.isnan(normed_activation_probs)] = 0
  log_probs = torch.where(normed_activation_probs > 0, normed_activation_probs.log(), 0)
  entropy = -torch.sum(normed_activation_probs * log_probs, dim=-1)
  flattened_probs = activation_probs.flatten()
  top_prob_value = flattened_probs.kthvalue(round(len(flattened_probs) * filter_rate)).values.item()
  top_position = (activation_probs > top_prob_value).sum(dim=-1)
  entropy[top_position == 0] = torch.inf
  flattened_entropy = entropy.flatten()
  top_entropy_value = round(len(flattened_entropy) * top_rate)
  _, index = flattened_entropy.topk(top_entropy_value, largest=False)
  row_index = index // entropy.size(1)
  col_index = index % entropy.size(1)
  selected_probs = activation_probs[row_index, col_index].transpose(0, 1)
  activation_bar = flattened_probs.kthvalue(round(len(flattened_probs) * activation_bar_ratio)).values.item()
  lang, indice = torch.where(selected_probs > activation_bar)
  out = {}
  for k, j in zip(lang.tolist(), indice.tolist()):
    out.setdefault(k, []).append((int(row_index[j]), int(col_index[j])))
  return {k: sorted(v) for k, v in out.items()}, activation_probs.permute(2, 0, 1).numpy(), entropy.numpy()


@pytest.fixture(scope="module")
def tiny_corpus_statistics(tiny):
  """Three "languages" of random token texts (each drawing from its own third of the
  vocabulary) through the tiny model: real pooled means and positive counts."""
  cfg, params = tiny
  rng = np.random.RandomState(4)
  texts, lang = [], []
  for k in range(3):
    for _ in range(12):
      texts.append([2] + rng.randint(3 + 21 * k, 24 + 21 * k, size=rng.randint(3, 14)).tolist())
      lang.append(k)
  W = max(map(len, texts))
  ids = np.zeros((len(texts), W), np.int32)
  for r, t in enumerate(texts):
    ids[r, :len(t)] = t
  lengths = np.array([len(t) for t in texts])
  mask = np.arange(W)[None, :] < lengths[:, None]
  pooled = pooled_taps(cfg, params, jnp.asarray(ids), jnp.asarray(mask),
                       sites=("gate_act", "resid"), positive_sites=("gate_act",))
  _, taps = capture_taps(lnj.Decoder(cfg), params, jnp.asarray(ids), sites=("gate_act",))
  stats = base.CorpusStatistics(
      languages=("a", "b", "c"), language_of_text=np.array(lang),
      responses={s: np.asarray(pooled[s]) for s in ("gate_act", "resid")},
      positive={"gate_act": np.asarray(pooled["gate_act.positive"])}, lengths=lengths,
      site_widths=cfg.site_widths, num_layers=cfg.num_layers)
  token_taps = [np.asarray(taps["gate_act"][r, :n]) for r, n in enumerate(lengths)]  # [T, L, I]
  return stats, token_taps


def test_lape_probabilities_entropies_and_selection_equal_their_code(tiny_corpus_statistics):
  from lang_neuron_jax.methods import lape

  stats, token_taps = tiny_corpus_statistics
  lang = stats.language_of_text
  fitted = lape.LAPE().fit(stats)
  # Per-token statistics, directly from the captured activations.
  over_zero = np.stack([sum((token_taps[r] > 0).sum(0) for r in np.flatnonzero(lang == k))
                        for k in range(3)], axis=-1).astype(np.int32)  # [L, I, K]
  n = np.array([sum(len(token_taps[r]) for r in np.flatnonzero(lang == k)) for k in range(3)])
  for rate in (0.05, 0.1, 0.2):
    theirs, probs, ent = torch_identify(over_zero, n, rate)
    np.testing.assert_array_equal(fitted.probs, probs)
    finite = np.isfinite(ent)
    np.testing.assert_allclose(lape.entropy(fitted.probs)[finite], ent[finite], rtol=1e-6, atol=1e-7)
    for k, name in enumerate(stats.languages):
      I = fitted.probs.shape[2]
      ours = sorted((int(f // I), int(f % I)) for f in fitted.units(name, rate))
      assert ours == theirs.get(k, []), (rate, name)
  assert sum(len(v) for v in theirs.values()) > 0
  for k in range(3):  # The "activate" value: the mean over the language's tokens.
    tokens = np.concatenate([token_taps[r] for r in np.flatnonzero(lang == k)])
    np.testing.assert_allclose(fitted.means[k], tokens.mean(0), rtol=1e-5, atol=1e-6)
  steer = fitted.steer("b", 0.2)
  mask, scale, shift = steer.edits["gate_act"]
  units = fitted.units("b", 0.2)
  assert mask.sum() == units.size and (scale[mask] == 0).all()
  np.testing.assert_array_equal(shift[mask], fitted.means[1].ravel()[units])


def test_lape_bad_input(tiny_corpus_statistics):
  from lang_neuron_jax.methods import lape

  stats, _ = tiny_corpus_statistics
  with pytest.raises(ValueError, match="unknown intervention"):
    lape.LAPE("boost")
  with pytest.raises(ValueError, match="top_rate"):
    lape.LAPE().check_strength(1.5)
  with pytest.raises(ValueError, match="positive counts"):
    lape.LAPE().fit(base.CorpusStatistics(**{**stats.__dict__, "positive": {}}))


def test_one_compiled_sampler_runs_every_method_and_strength(tiny, tiny_corpus_statistics):
  """Rows of the baseline, AP, LAPE (both interventions) and DiffMean at several
  strengths share one compilation; a second batch with other strengths and languages
  compiles nothing new; the baseline row equals generation without any intervention."""
  from lang_neuron_jax.neurons import expertise as expertise_lib
  from lang_neuron_jax.methods import ap, lape, probe

  cfg, params = tiny
  stats, _ = tiny_corpus_statistics
  index = expertise_lib.neuron_index(cfg, cfg.neuron_sites)
  rng = np.random.RandomState(0)
  scores = lnj.Expertise(index, stats.languages, rng.rand(3, index.size).astype(np.float32),
                         {k: rng.randn(3, index.size).astype(np.float32)
                          for k in expertise_lib.STATISTICS})
  fits = {"ap": ap.APNeurons().fit(base.CorpusStatistics(**{**stats.__dict__, "expertise": scores})),
          "lape": lape.LAPE().fit(stats),
          "lape_off": lape.LAPE("deactivate_others").fit(stats),
          "diffmean": diffmean.DiffMean().fit(stats),
          "probe": probe.LinearProbe().fit(stats)}
  shapes = {s: stats.shape(s) for s in cfg.neuron_sites + ("gate_act", "resid")}
  ids = jnp.full((6, 3), 5, jnp.int32).at[:, 0].set(2)
  lengths = jnp.full((6,), 3, jnp.int32)
  run = lambda iv: np.asarray(sampling.generate(cfg, params, ids, lengths, max_new_tokens=5,
                                                intervention=iv)[0])
  first = [None, fits["ap"].steer("a", 4), fits["lape"].steer("b", 0.1),
           fits["lape_off"].steer("c", 0.2), fits["diffmean"].steer("a", 1.0),
           fits["diffmean"].steer("b", 8.0)]
  second = [fits["ap"].steer("c", 40), fits["ap"].steer("b", 2), fits["lape"].steer("a", 0.2),
            fits["probe"].steer("b", 8.0), fits["diffmean"].steer("c", 0.5),
            fits["lape_off"].steer("a", 0.1)]
  out = run(base.stack_steers(first, shapes))
  before = sampling.generate._cache_size()
  run(base.stack_steers(second, shapes))
  assert sampling.generate._cache_size() == before
  plain = np.asarray(sampling.generate(cfg, params, ids[:1], lengths[:1], max_new_tokens=5)[0])
  assert np.array_equal(out[0], plain[0])
  assert fits["lape_off"].steer("c", 0.2).edits["gate_act"][0].sum() > 0


def test_lape_deactivate_others_zeroes_exactly_the_other_languages_units(tiny_corpus_statistics):
  """"deactivate_others" sets to 0 every unit of the other languages that the target
  does not share, and nothing else (the units themselves are checked against the
  authors' selection in the test above)."""
  from lang_neuron_jax.methods import lape

  stats, _ = tiny_corpus_statistics
  fitted = lape.LAPE("deactivate_others").fit(stats)
  _, L, I = fitted.probs.shape
  shared_somewhere = False
  for rate in (0.05, 0.1, 0.2):
    for lang in stats.languages:
      own = set(fitted.units(lang, rate).tolist())
      others = set().union(*(fitted.units(l, rate).tolist() for l in stats.languages if l != lang))
      shared_somewhere |= bool(own & others)
      mask, scale, shift = fitted.steer(lang, rate).edits["gate_act"]
      assert mask.shape == (L, I)
      assert set(np.flatnonzero(mask.ravel()).tolist()) == others - own, (rate, lang)
      assert (scale[mask] == 0).all() and (shift[mask] == 0).all()
      assert (scale[~mask] == 1).all() and (shift[~mask] == 0).all()  # the rest untouched
  assert shared_somewhere  # the "except those the target shares" rule was exercised
