"""How the comparison chooses each method's strength and tests what it chose.

Choosing on the samples one reports on is optimistic: the best valid share of a sweep is
a maximum over noisy shares, the more so the more settings a method has. So the samples
are split in two, as AxBench splits its prompts (``stanfordnlp/axbench``:
``winrate_split_ratio``, ``get_best_factors``): every setting is generated on the
*choosing* half, each method's strength per language is chosen there
(:func:`best_settings`), and only the chosen settings (and the baseline) are generated
on the *held-out* half, which the report's intervals and tests come from. The split is a
permutation of the sample indices fixed by the seed (:func:`split_samples`), the same for
every condition, so each half stays paired with the baseline's samples (common random
numbers) and adding a method changes no other method's samples.

Significance (McNemar against the baseline on the same samples) is Holm-adjusted within
each method's own family of tests (:func:`holm_within_methods`), not over the whole
table: a method's marks then do not depend on which other methods are compared.

The selection criterion is one call, :func:`choose`. The fluency cost is the study's own
rule, :func:`lang_neuron_jax.evaluation.cost.within_cost` (a setting's broken share at
most ``max_extra_broken`` above the baseline's), called directly rather than wrapped, so
that the study's report and the comparison cannot judge the same setting differently;
:func:`describe_cost` words it for the report. The one call applies it everywhere the
comparison uses it: the choice, the translation strengths (through the choice) and the
held-out report's "over the cost" flag.
"""

from __future__ import annotations

import collections
from typing import Iterable, Mapping, Sequence

import numpy as np

from lang_neuron_jax.evaluation import cost, uncertainty

# What best_settings copies of the chosen condition, and the held-out report of it.
FIELDS = ("strength", "valid_share", "valid_share_ci", "target_share", "target_share_ci",
          "broken_share", "broken_share_ci", "median_perplexity", "significant_valid")


def split_samples(choosing: int, held_out: int, seed: int
                  ) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Sample indices ``(choosing, held_out)``, each sorted: a permutation of
  ``range(choosing + held_out)`` drawn from ``seed`` and cut after its first ``choosing``.

  Sample ``i`` of every condition is drawn with the key ``fold_in(seed, i)``, so the two
  halves are independent samples of each condition, paired across conditions.
  """
  order = np.random.default_rng(seed).permutation(choosing + held_out)
  return (tuple(sorted(int(i) for i in order[:choosing])),
          tuple(sorted(int(i) for i in order[choosing:])))


def describe_cost(baseline: Mapping, max_extra_broken: float) -> str:
  """The rule of :func:`lang_neuron_jax.evaluation.cost.within_cost` in words, with the
  baseline's broken share on the half it is applied to, for the report."""
  base = baseline.get("broken_share")
  return (f"broken share at most {100 * max_extra_broken:g} points above the baseline's "
          f"{'n/a' if base is None else f'{base:.0%}'}")


def choose(candidates: Sequence[Mapping], baseline: Mapping, max_extra_broken: float
           ) -> Mapping | None:
  """The selection criterion: of one method's conditions for one language (its sweep, on
  the choosing half), the one of highest valid share among those within the fluency cost
  (:func:`lang_neuron_jax.evaluation.cost.within_cost` at ``max_extra_broken``); ties go
  to the weaker (smaller) strength. None if no condition is within the cost.

  The bound is the config's, not the entries' own ``within_cost`` key, which
  ``summarize_unconditional`` computes at the default bound.
  """
  ok = [v for v in candidates
        if cost.within_cost(v, baseline, max_extra_broken=max_extra_broken)]
  return max(ok, key=lambda v: (v["valid_share"], -v["strength"]), default=None)


def best_settings(metrics: Mapping[str, dict], methods: Iterable[str],
                  languages: Iterable[str], max_extra_broken: float) -> dict:
  """``{method: {language: fields | None}}``: :func:`choose` on each method's conditions
  for each language in ``metrics`` (``summarize_unconditional`` of the choosing half),
  with :data:`FIELDS` of the chosen condition."""
  out = {}
  for m in methods:
    for lang in languages:
      rows = [v for v in metrics.values() if v["kind"] == m and v["language"] == lang]
      best = choose(rows, metrics["baseline"], max_extra_broken)
      out.setdefault(m, {})[lang] = None if best is None else {k: best[k] for k in FIELDS}
  return out


def holm_within(families: Iterable[Sequence[dict]]) -> None:
  """Re-adjusts the tests of each family's entries (dicts with ``p_target`` and
  ``p_valid``: McNemar's p against the baseline) by Holm within the family, setting
  ``p_{target,valid}_holm`` and ``significant_{target,valid}``. Entries without a test
  (the baseline, or samples that do not pair: p None) are left as they are and do not
  count in their family."""
  for family in families:
    members = [e for e in family if e.get("p_valid") is not None]
    for name in ("target", "valid"):
      adjusted = uncertainty.holm([e[f"p_{name}"] for e in members]) if members else []
      for e, adj in zip(members, adjusted):
        e[f"p_{name}_holm"] = float(adj)
        e[f"significant_{name}"] = bool(adj < uncertainty.ALPHA)


def _grouped(pairs: Iterable[tuple[str, dict]]) -> list[list[dict]]:
  groups = collections.defaultdict(list)
  for key, entry in pairs:
    groups[key].append(entry)
  return list(groups.values())


def holm_within_methods(by_condition: Mapping[str, dict]) -> dict:
  """A copy of ``summarize_unconditional``'s result whose tests are Holm-adjusted within
  each method (``kind``): its conditions in that result, every language and strength."""
  out = {k: dict(v) for k, v in by_condition.items()}
  holm_within(_grouped((v["kind"], v) for v in out.values()))
  return out


def holm_within_roles(translation: Mapping[str, Mapping[str, dict]]) -> dict:
  """A copy of ``summarize_translation``'s result (``{set: {role: fields}}``) whose tests
  are Holm-adjusted within each role (a method): its sets."""
  out = {key: {role: dict(v) for role, v in by_role.items()}
         for key, by_role in translation.items()}
  holm_within(_grouped((role, v) for by_role in out.values() for role, v in by_role.items()))
  return out
