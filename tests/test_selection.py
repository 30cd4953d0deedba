"""Flat neuron numbering, top/bottom-N selection and interventions from neuron sets."""

import numpy as np
import pytest

from lang_neuron_jax import selection


def toy_expertise():
  index = selection.NeuronIndex(("q", "up"), 2, (3, 4), "toy")
  rng = np.random.RandomState(0)
  ap = rng.rand(2, index.size).astype(np.float32)
  ap[0, 5] = ap[0, 6] = 0.99  # A tie at the top: broken by flat index.
  stats = {k: rng.randn(2, index.size).astype(np.float32) for k in selection.STATISTICS}
  return selection.Expertise(index, ("en", "de"), ap, stats)


def test_flat_index_round_trip():
  index = selection.NeuronIndex(("q", "up"), 2, (3, 4))
  assert index.size == 14
  flat = np.arange(14)
  site, layer, unit = index.unflatten(flat)
  assert site.tolist() == [0] * 6 + [1] * 8
  assert (layer[:6].tolist(), unit[:6].tolist()) == ([0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2])
  assert np.array_equal(index.flatten(site, layer, unit), flat)


def test_select_top_bottom_both_random():
  exp = toy_expertise()
  top = selection.select(exp, "en", 3, "top")
  assert top.flat[:2].tolist() == [5, 6]
  assert np.all(np.diff(top.ap) <= 0)
  bottom = selection.select(exp, "en", 3, "bottom")
  assert np.all(bottom.ap <= top.ap.min())
  both = selection.select(exp, "en", 3, "both")
  assert len(both) == 6 and set(both.flat) == set(top.flat) | set(bottom.flat)
  rand = selection.select(exp, "en", 3, "random", seed=1)
  assert len(rand) == 6 and len(set(rand.flat)) == 6
  assert np.array_equal(rand.flat, selection.select(exp, "en", 3, "random", seed=1).flat)
  np.testing.assert_array_equal(both.stats["on_p50"], exp.stats["on_p50"][0][both.flat])


@pytest.mark.parametrize("n,kind", [(0, "top"), (15, "top"), (8, "both"), (-1, "both"),
                                    (2.5, "top")])
def test_impossible_n(n, kind):
  with pytest.raises(ValueError, match="N must be an integer from 1 to"):
    selection.select(toy_expertise(), "en", n, kind)


def test_unknown_language_and_kind():
  with pytest.raises(ValueError, match="Unknown language 'fr'"):
    selection.select(toy_expertise(), "fr", 2)
  with pytest.raises(ValueError, match="Unknown selection kind"):
    selection.select(toy_expertise(), "en", 2, "middle")


def test_build_intervention_single_and_batched():
  exp = toy_expertise()
  s = selection.select(exp, "de", 2, "both")
  iv = selection.build_intervention([s])
  assert iv.edits["q"].mask.shape == (2, 3) and iv.edits["up"].mask.shape == (2, 4)
  for i in range(len(s)):
    site = exp.index.sites[s.site[i]]
    assert bool(iv.edits[site].mask[s.layer[i], s.unit[i]])
    assert float(iv.edits[site].value[s.layer[i], s.unit[i]]) == pytest.approx(s.stats["on_p50"][i])
  assert int(sum(e.mask.sum() for e in iv.edits.values())) == 4
  batched = selection.build_intervention([None, s], statistic="off_mean", multiplier=2.0)
  assert batched.edits["up"].mask.shape == (2, 2, 4)
  assert not bool(batched.edits["up"].mask[0].any())
  with pytest.raises(ValueError, match="statistic"):
    selection.build_intervention([s], statistic="p99")


def test_sets_from_another_model_are_refused():
  exp = toy_expertise()
  s = selection.select(exp, "en", 2)
  other = selection.NeuronIndex(("q", "up"), 2, (3, 4), "another")
  with pytest.raises(ValueError, match="belongs to model toy"):
    selection.check_model(s, other)


def test_expertise_save_load(tmp_path):
  exp = toy_expertise()
  exp.save(str(tmp_path / "e.npz"))
  back = selection.Expertise.load(str(tmp_path / "e.npz"))
  assert back.index == exp.index and back.languages == exp.languages
  assert np.array_equal(back.ap, exp.ap) and np.array_equal(back.stats["off_p50"], exp.stats["off_p50"])
