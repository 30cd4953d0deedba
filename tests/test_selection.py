"""Flat neuron numbering, top/bottom-N selection and interventions from neuron sets."""

import numpy as np
import pytest

from lang_neuron_jax.neurons import selection


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
  assert top.flat[:2].tolist() == [5, 6]  # tied at 0.99: lower flat index first
  assert np.all(np.diff(top.ap) <= 0)
  bottom = selection.select(exp, "en", 3, "bottom")
  assert np.all(np.diff(bottom.ap) >= 0) and np.all(bottom.ap <= top.ap.min())
  # N counts every neuron of the set: both at N=6 is the top 3 and the bottom 3.
  both = selection.select(exp, "en", 6, "both")
  assert len(both) == 6
  assert both.flat.tolist() == top.flat.tolist() + bottom.flat.tolist()
  rand = selection.select(exp, "en", 6, "random", seed=1)
  assert len(rand) == 6 and len(set(rand.flat)) == 6
  assert np.array_equal(rand.flat, selection.select(exp, "en", 6, "random", seed=1).flat)
  np.testing.assert_array_equal(both.stats["on_p50"], exp.stats["on_p50"][0][both.flat])


def test_random_controls_are_drawn_per_language():
  index = selection.NeuronIndex(("up",), 4, (500,), "toy")
  exp = selection.Expertise(index, ("en", "de"), np.zeros((2, index.size), np.float32),
                            {k: np.zeros((2, index.size), np.float32) for k in selection.STATISTICS})
  en = selection.select(exp, "en", 100, "random")
  de = selection.select(exp, "de", 100, "random")
  assert len(set(en.flat) & set(de.flat)) < 30  # independent draws: about 5 shared
  assert not np.array_equal(selection.select(exp, "en", 100, "random", seed=1).flat, en.flat)


def test_bottom_ties_break_by_lowest_flat_index():
  index = selection.NeuronIndex(("up",), 1, (6,), "toy")
  ap = np.array([[0.5, 0.1, 0.9, 0.1, 0.1, 0.7]], np.float32)
  exp = selection.Expertise(index, ("en",), ap, {k: ap for k in selection.STATISTICS})
  assert selection.select(exp, "en", 2, "bottom").flat.tolist() == [1, 3]
  assert selection.select(exp, "en", 4, "both").flat.tolist() == [2, 5, 1, 3]


@pytest.mark.parametrize("n,kind", [(0, "top"), (15, "top"), (16, "both"), (-2, "both"),
                                    (2.5, "top"), (0, "random"), (True, "top")])
def test_impossible_n(n, kind):
  with pytest.raises(ValueError, match="N must be an integer from"):
    selection.select(toy_expertise(), "en", n, kind)


def test_odd_n_for_both_says_what_to_do():
  with pytest.raises(ValueError, match="N=5 is odd.*give an even N"):
    selection.select(toy_expertise(), "en", 5, "both")
  assert len(selection.select(toy_expertise(), "en", 14, "both")) == 14  # every neuron
  assert selection.cap_n(200_000, 14, "both") == 14 and selection.cap_n(200_000, 15, "both") == 14


def test_unknown_language_and_kind():
  with pytest.raises(ValueError, match="Unknown language 'fr'"):
    selection.select(toy_expertise(), "fr", 2)
  with pytest.raises(ValueError, match="Unknown selection kind"):
    selection.select(toy_expertise(), "en", 2, "middle")


def test_build_intervention_single_and_batched():
  exp = toy_expertise()
  s = selection.select(exp, "de", 4, "both")
  iv = selection.build_intervention([s])
  assert iv.edits["q"].mask.shape == (2, 3) and iv.edits["up"].mask.shape == (2, 4)
  for i in range(len(s)):
    site = exp.index.sites[s.site[i]]
    assert bool(iv.edits[site].mask[s.layer[i], s.unit[i]])
    assert float(iv.edits[site].shift[s.layer[i], s.unit[i]]) == pytest.approx(s.stats["on_p50"][i])
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
    selection.check_same_model(s, other)


def test_expertise_save_load(tmp_path):
  exp = toy_expertise()
  exp.save(str(tmp_path / "e.npz"))
  back = selection.Expertise.load(str(tmp_path / "e.npz"))
  assert back.index == exp.index and back.languages == exp.languages
  assert np.array_equal(back.ap, exp.ap) and np.array_equal(back.stats["off_p50"], exp.stats["off_p50"])
