"""Control: interventions inside generation, against PyTorch hooks; mixed-condition batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lang_neuron_jax as lnj
from lang_neuron_jax.generation import batching, sampling
from lang_neuron_jax.control import conditions, rows as control
from lang_neuron_jax.control import stage as control_stage
from lang_neuron_jax.evaluation import measures as evaluation, scoring
from lang_neuron_jax.neurons import selection
from tests.conftest import save_tiny_gemma3


def torch_greedy_with_hooks(model, prompt, n, edits):
  """Plain PyTorch greedy loop; forward hooks edit (layer, module, unit) outputs.

  ``edits``: ``{(layer, module path): (units, values)}`` sets the units to the values;
  ``(units, values, form)`` with form "set", "add" or "scale" says what the values do. The
  path "" is the decoder layer itself (its output is the residual stream).
  """
  import torch

  handles = []
  for (layer, path), (units, values, *form) in edits.items():
    module = model.model.layers[layer].get_submodule(path)
    form = form[0] if form else "set"

    def hook(m, inp, out, units=units, values=values, form=form):
      if isinstance(out, tuple):  # Some decoder layers return (hidden, ...).
        return (hook(m, inp, out[0]),) + tuple(out[1:])
      out = out.clone()
      v = torch.tensor(values, dtype=out.dtype)
      if form == "set":
        out[..., units] = v
      elif form == "add":
        out[..., units] = out[..., units] + v
      else:
        out[..., units] = out[..., units] * v
      return out
    handles.append(module.register_forward_hook(hook))
  ids = list(prompt)
  with torch.no_grad():
    for _ in range(n):
      logits = model(torch.tensor([ids])).logits
      ids.append(int(logits[0, -1].argmax()))
  for h in handles:
    h.remove()
  return ids[len(prompt):]


def until_eos(tokens, eos):
  """What our sampler emits for a greedy continuation: up to and including the first
  EOS, or all of it. Comparing with this, not with a prefix of our own length, fails
  when generation stops early (a prefix of length 0 matches anything)."""
  return tokens[:tokens.index(eos) + 1] if eos in tokens else tokens


def test_greedy_with_intervention_matches_pytorch_hooks(tmp_path):
  model = save_tiny_gemma3(str(tmp_path))
  lm = lnj.load_model(str(tmp_path))
  cfg = lm.config
  rng = np.random.RandomState(0)
  units_up, values_up = [3, 10, 40], rng.randn(3).astype(np.float32) * 3
  units_q, values_q = [0, 5], rng.randn(2).astype(np.float32) * 3
  edits = {(1, "mlp.up_proj"): (units_up, values_up), (3, "self_attn.q_proj"): (units_q, values_q)}
  masks = {s: np.zeros((cfg.num_layers, w), bool) for s, w in cfg.site_widths.items()}
  vals = {s: np.zeros((cfg.num_layers, w), np.float32) for s, w in cfg.site_widths.items()}
  masks["up"][1, units_up], vals["up"][1, units_up] = True, values_up
  masks["q"][3, units_q], vals["q"][3, units_q] = True, values_q
  iv = lnj.Intervention({s: lnj.SiteEdit.fix(masks[s], vals[s])
                         for s in ("up", "q")})
  prompt = [2, 17, 33, 4]
  ids, lengths = batching.pad_prompts([prompt], cfg.pad_token_id)
  for intervention, hooks in ((None, {}), (iv, edits)):
    tokens, counts = sampling.generate(cfg, lm.params, jnp.asarray(ids), jnp.asarray(lengths),
                                       max_new_tokens=12, intervention=intervention)
    ours = np.asarray(tokens[0, :counts[0]]).tolist()
    assert ours == until_eos(torch_greedy_with_hooks(model, prompt, 12, hooks), cfg.eos_token_id)


def test_every_edit_form_in_one_batch_matches_pytorch_hooks(tmp_path):
  """One compiled call, three rows, three forms: fix ``up`` and ``q`` units (the paper),
  multiply ``gate_act`` units (LAPE's site) and add a vector to the residual stream
  (a steering vector); each row's greedy tokens equal PyTorch's with that row's hooks."""
  model = save_tiny_gemma3(str(tmp_path))
  lm = lnj.load_model(str(tmp_path))
  cfg = lm.config
  rng = np.random.RandomState(3)
  L = cfg.num_layers
  rows = [  # (site, layer, units, values, form, torch module path)
      [("up", 1, [3, 10, 40], rng.randn(3) * 3, "set", "mlp.up_proj"),
       ("q", 3, [0, 5], rng.randn(2) * 3, "set", "self_attn.q_proj")],
      [("gate_act", 1, [2, 7, 11, 30], rng.rand(4) * 4, "scale", "mlp.act_fn")],
      [("resid", 2, list(range(cfg.width)), rng.randn(cfg.width) * 2, "add", "")],
  ]
  sites = sorted({e[0] for row in rows for e in row})
  mask = {s: np.zeros((3, L, cfg.site_widths[s]), bool) for s in sites}
  scale = {s: np.ones((3, L, cfg.site_widths[s]), np.float32) for s in sites}
  shift = {s: np.zeros((3, L, cfg.site_widths[s]), np.float32) for s in sites}
  for r, row in enumerate(rows):
    for site, layer, units, values, form, _ in row:
      mask[site][r, layer, units] = True
      if form == "scale":
        scale[site][r, layer, units] = values
      else:
        scale[site][r, layer, units] = 0.0 if form == "set" else 1.0
        shift[site][r, layer, units] = values
  iv = lnj.Intervention({s: lnj.SiteEdit(mask=jnp.asarray(mask[s]), scale=jnp.asarray(scale[s]),
                                         shift=jnp.asarray(shift[s])) for s in sites})
  prompt = [2, 17, 33, 4]
  ids, lengths = batching.pad_prompts([prompt] * 3, cfg.pad_token_id)
  tokens, counts = sampling.generate(cfg, lm.params, jnp.asarray(ids), jnp.asarray(lengths),
                                     max_new_tokens=12, intervention=iv)
  plain = torch_greedy_with_hooks(model, prompt, 12, {})
  for r, row in enumerate(rows):
    hooks = {(layer, path): (units, np.asarray(values, np.float32), form)
             for _, layer, units, values, form, path in row}
    ours = np.asarray(tokens[r, :counts[r]]).tolist()
    theirs = torch_greedy_with_hooks(model, prompt, 12, hooks)
    assert ours == until_eos(theirs, cfg.eos_token_id), (r, ours, theirs)
    assert theirs != plain, f"row {r}'s edit changes nothing; make it stronger"


def toy_setup():
  from tests.test_decoder import tiny_config
  cfg = tiny_config(eos_token_id=66)
  module = lnj.Decoder(cfg)
  params = module.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"]
  lm = lnj.LanguageModel(module, params, cfg, None, "tiny")
  index = lnj.neuron_index(cfg, lnj.NEURON_SITES, "tiny")
  rng = np.random.RandomState(0)
  stats = {k: rng.randn(2, index.size).astype(np.float32) * 4 for k in selection.STATISTICS}
  exp = selection.Expertise(index, ("en", "de"), rng.rand(2, index.size).astype(np.float32), stats)
  return lm, exp


def test_mixed_condition_batches_equal_separate_runs():
  lm, exp = toy_setup()
  conds = [conditions.BASELINE, conditions.condition("de", "both", 50),
           conditions.condition("en", "random", 50)]
  jobs = [conditions.Job(c, (2,), i) for c in conds for i in range(3)]
  warm = sampling.Sampler(temperature=0.8)
  mixed = control.run_jobs(lm, control.neuron_steering(exp), jobs, max_new_tokens=8, sampler=warm, batch_size=9,
                           progress=False)
  for c in conds:
    alone = control.run_jobs(lm, control.neuron_steering(exp), [j for j in jobs if j.condition == c], max_new_tokens=8,
                             sampler=warm, batch_size=3, progress=False)
    assert [r["tokens"] for r in alone] == [r["tokens"] for r in mixed if r["condition"] == c.name]
  # Interventions change the samples.
  by = lambda name: [r["tokens"] for r in mixed if r["condition"] == name]
  assert by("baseline") != by("de/both/50")


def test_continuous_batching_gives_the_rows_of_fixed_batches():
  """Prompts of different lengths, rows that stop at different steps, mixed conditions."""
  lm, exp = toy_setup()
  conds = [conditions.BASELINE, conditions.condition("de", "both", 50),
           conditions.condition("en", "top", 20)]
  rng = np.random.RandomState(3)
  jobs = [conditions.Job(c, tuple(rng.randint(2, 60, 1 + i % 5)), i) for c in conds for i in range(5)]
  flags = np.zeros((4, lm.config.vocab_size), bool)
  flags[0, 7::5] = flags[1, 7::5] = flags[3] = True  # Every fifth token ends a line.
  stop = sampling.LineStop(*(jnp.asarray(f) for f in flags))
  run = lambda **kw: control.run_jobs(lm, control.neuron_steering(exp), jobs, max_new_tokens=10, sampler=sampling.GREEDY,
                                      line_stop=stop, progress=False, **kw)
  fixed = run(batch_size=15)
  lengths = {len(r["tokens"]) for r in fixed}
  assert min(lengths) < 10 and max(lengths) == 10
  streamed = []
  refilled = run(batch_size=4, refill=True, on_batch=streamed.extend)
  assert [r["tokens"] for r in refilled] == [r["tokens"] for r in fixed]
  assert sorted((r["condition"], r["sample"]) for r in streamed) == sorted(
      (r["condition"], r["sample"]) for r in fixed)


def test_balanced_batch_size():
  assert control.balanced_batch_size(1320, 128) == 120  # 11 batches, not 10 + a padded 40.
  assert control.balanced_batch_size(288, 128) == 96
  assert control.balanced_batch_size(5, 128) == 5
  assert control.balanced_batch_size(5, 128, num_devices=4) == 8
  assert control.balanced_batch_size(256, 128) == 128


def _sweep(languages, num_neurons):
  """The paper's sweep as the control stage builds it: N resolved once against the model
  (ControlConfig.resolve), then the conditions."""
  resolved = control_stage.ControlConfig(languages=tuple(languages)).resolve(num_neurons,
                                                                             languages)
  return resolved, [c.name for c in conditions.unconditional_conditions(
      languages, num_neurons, ns=resolved.ns, main_n=resolved.main_n)]


def test_unconditional_conditions_are_the_papers_with_n_total():
  resolved, names = _sweep(["en", "de"], 124_416)
  assert resolved.ns == (2, 20, 200, 2000, 20000, 124416)  # 200,000 capped once
  assert names[0] == "baseline"
  # The authors' limited_{N}_both for each N of the sweep (the largest capped at the
  # model's neuron count), then the main condition's controls: limited_1000_top,
  # limited_1000_bottom and 2,000 random neurons. English is a target like any other.
  for lang in ("en", "de"):
    assert [n for n in names if n.startswith(f"{lang}/")] == [
        f"{lang}/both/{n}" for n in (2, 20, 200, 2000, 20000, 124416)] + [
            f"{lang}/top/1000", f"{lang}/bottom/1000", f"{lang}/random/2000"]


def test_unconditional_conditions_cap_n_on_a_small_model():
  resolved, names = _sweep(["de"], 1001)
  assert (resolved.main_n, resolved.translation_n) == (1000, 1000)  # even, at most 1001
  assert "de/both/1000" in names and "de/both/200000" not in names
  assert {"de/top/500", "de/bottom/500", "de/random/1000"} <= set(names)
  # Unresolved, an N above the model's neurons is refused, not silently capped again.
  with pytest.raises(ValueError, match="N must be an integer from 2 to 1000"):
    conditions.unconditional_conditions(["de"], 1001, ns=(200_000,), main_n=1000)


def test_odd_n_is_refused():
  with pytest.raises(ValueError, match="N=21 is odd"):
    conditions.unconditional_conditions(["de"], 1000, ns=(2, 21))


def test_cut_translation():
  assert conditions.cut_translation(" Hallo Welt.\nEnglish: next") == "Hallo Welt."
  assert conditions.cut_translation("\n\n  Bonjour\n") == "Bonjour"
  assert conditions.cut_translation("  \n") == ""


def test_perplexity_matches_direct_computation():
  lm, _ = toy_setup()
  prompts, conts = [[2, 5], [2]], [[7, 9, 11], []]
  ppl = evaluation.perplexity(lm, prompts, conts, batch_size=2)
  assert np.isnan(ppl[1])
  logits = lm.module.apply({"params": lm.params}, jnp.asarray([[2, 5, 7, 9, 11]])).logits
  logp = jax.nn.log_softmax(logits[0], -1)
  ref = np.exp(-np.mean([float(logp[1, 7]), float(logp[2, 9]), float(logp[3, 11])]))
  assert ppl[0] == pytest.approx(ref, rel=1e-4)
  # Coherence: tokens 2..n, each's log-likelihood in context minus after the prompt alone
  # (column 1, the distribution after [2, 5]); NaN without two tokens.
  coherence = scoring.score(lm, prompts, conts, batch_size=2).coherence
  want = np.mean([float(logp[2, 9] - logp[1, 9]), float(logp[3, 11] - logp[1, 11])])
  assert coherence[0] == pytest.approx(want, rel=1e-4, abs=1e-5) and np.isnan(coherence[1])


def test_evaluate_unconditional_scores_every_sample(monkeypatch):
  """Every sample gets its perplexity and coherence (not only the first of each
  condition, issue 30), row for row as the batched scorer gives them after the
  unconditional prompt; an empty one gets None (and a one-token one no coherence); the old
  perplexity_samples argument warns and changes nothing."""
  from lang_neuron_jax.control import experiment

  # Language ID is not what this tests (test_evaluation.py does): skip loading its model.
  monkeypatch.setattr(evaluation, "identify_language", lambda texts, **_: ["de"] * len(texts))
  lm, _ = toy_setup()
  tokens = [[7, 9, 11], [4] * 6, [], [8]]
  records = lambda: [{"condition": "baseline", "sample": i, "text": "x" * len(t), "tokens": t}
                     for i, t in enumerate(tokens)]
  scored = experiment.evaluate_unconditional(lm, records())
  prompt = conditions.unconditional_prompt(lm.config)
  direct = scoring.score(lm, [prompt] * len(tokens), tokens)
  assert [r["perplexity"] for r in scored] == [direct.perplexity[0], direct.perplexity[1], None,
                                               direct.perplexity[3]]
  assert [r["coherence"] for r in scored] == [direct.coherence[0], direct.coherence[1], None, None]
  assert all(r["detected"] == "de" for r in scored)
  with pytest.warns(DeprecationWarning, match="ignored"):
    again = experiment.evaluate_unconditional(lm, records(), perplexity_samples=1)
  assert [(r["perplexity"], r["coherence"]) for r in again] == \
      [(r["perplexity"], r["coherence"]) for r in scored]


def test_perplexity_widths_stop_at_the_longest_row():
  assert evaluation.perplexity_width(65, 65) == 65  # Not 80: full-length samples.
  assert evaluation.perplexity_width(20, 65) == 32
  lm, _ = toy_setup()
  prompts = [[2], [2, 5], [2], [2, 5, 7]]
  conts = [[9] * 20, [7, 9, 11], [4] * 3, [8] * 30]  # Totals 21, 5, 4, 33 tokens.
  together = evaluation.perplexity(lm, prompts, conts, batch_size=2)  # Widths 16, 33.
  alone = [evaluation.perplexity(lm, [p], [c], batch_size=1)[0] for p, c in zip(prompts, conts)]
  np.testing.assert_allclose(together, alone, rtol=1e-4)


def test_changing_neurons_or_values_never_recompiles_the_sampler():
  lm, exp = toy_setup()
  ids, lengths = batching.pad_prompts([[2]] * 4, lm.config.pad_token_id)
  sizes = []
  for lang, n, statistic in (("de", 10, "on_p50"), ("en", 40, "off_mean"), ("de", 90, "zero")):
    s = selection.select(exp, lang, n, "both")
    iv = selection.build_intervention([s, None, s, s], statistic=statistic)
    sampling.generate(lm.config, lm.params, jnp.asarray(ids), jnp.asarray(lengths),
                      max_new_tokens=4, intervention=iv)
    sizes.append(sampling.generate._cache_size())
  assert sizes[1] == sizes[0] and sizes[2] == sizes[0]


@pytest.mark.parametrize("name", ["llama_gqa", "xglm_scaled", "bloom_3heads"])
def test_greedy_with_intervention_matches_pytorch_hooks_other_families(tmp_path, name):
  from tests.test_families import CONFIGS, FAMILIES, build

  family, kwargs = CONFIGS[name]
  model = build(family, kwargs, str(tmp_path))
  lm = lnj.load_model(str(tmp_path))
  cfg = lm.config
  rng = np.random.RandomState(1)
  first = cfg.neuron_sites[0]  # q or qkv
  chosen = {("up", 1): [2, 9], (first, 0): [1, 4, 7]}
  masks = {s: np.zeros((cfg.num_layers, w), bool) for s, w in cfg.site_widths.items()}
  vals = {s: np.zeros((cfg.num_layers, w), np.float32) for s, w in cfg.site_widths.items()}
  hooks = {}
  for (site, layer), units in chosen.items():
    values = rng.randn(len(units)).astype(np.float32) * 2
    masks[site][layer, units], vals[site][layer, units] = True, values
    hooks[(layer, FAMILIES[family]["sites"][site])] = (units, values)
  iv = lnj.Intervention({s: lnj.SiteEdit.fix(masks[s], vals[s])
                         for s in {s for s, _ in chosen}})
  prompt = [5, 17, 33, 4]
  ids, lengths = batching.pad_prompts([prompt], cfg.pad_token_id)
  layers = FAMILIES[family]["layers"](model)

  class Wrapped:  # torch_greedy_with_hooks reads model.model.layers
    def __init__(self, m):
      self.m, self.model = m, type("M", (), {"layers": layers})()
    def __call__(self, x):
      return self.m(x)

  for intervention, edits in ((None, {}), (iv, hooks)):
    tokens, counts = sampling.generate(cfg, lm.params, jnp.asarray(ids), jnp.asarray(lengths),
                                       max_new_tokens=10, intervention=intervention)
    ours = np.asarray(tokens[0, :counts[0]]).tolist()
    assert ours == until_eos(torch_greedy_with_hooks(Wrapped(model), prompt, 10, edits),
                             cfg.eos_token_id)
