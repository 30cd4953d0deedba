"""What the method comparison runs: the methods by name, and :class:`CompareConfig`."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from lang_neuron_jax.compare import choice
from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.errors import ConfigError
from lang_neuron_jax.evaluation import cost
from lang_neuron_jax.find import stage as find
from lang_neuron_jax.methods import ap, base, diffmean, lape, probe

METHODS: Mapping[str, type[base.Method]] = {
    "ap": ap.APNeurons, "lape": lape.LAPE, "diffmean": diffmean.DiffMean,
    "probe": probe.LinearProbe}
# Compared unless ``methods`` says otherwise: with the probe the default comparison runs
# past its time budget on a 2-core CPU (docs/performance.md has the measurements).
DEFAULT_METHODS = ("ap", "lape", "diffmean")


def make_method(name: str, config: "CompareConfig | None" = None) -> base.Method:
  """The method called ``name`` with the options ``config`` gives it (defaults without);
  a ValueError names the known methods."""
  if name not in METHODS:
    raise ConfigError(f"Unknown method {name!r}; use one of {sorted(METHODS)}.")
  return METHODS[name](**(dict(config.options).get(name, {}) if config else {}))


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompareConfig:
  """What the comparison does. Its defaults are the default preset
  (``study.COMPARE_DEFAULT``).

  The default counts. The report's figures come from the held-out half, so its size sets
  the intervals: ``samples = 41`` is the smallest n from which every two shares of n
  samples at least 30 points apart have disjoint 95% Wilson intervals, whatever the
  shares (the closest case is around 50%: 14/41 = 34% [21.6-49.5] against 27/41 = 66%
  [50.5-78.4]; at n = 40, 14/40 [22.1-50.5] and 26/40 [49.5-77.9] still overlap;
  ``tests/test_compare.py`` checks this), so two methods' best settings 30 points apart
  are told apart by their intervals alone (about +-15 points each, against +-20 to 25
  at the 16 samples per setting of before).

  Only the chosen settings and the baseline are generated on the held-out half (19
  conditions for three methods and six languages), every setting on the choosing half
  (55), so the choosing half is the one that must be small to keep the default within 20
  minutes on a 2-core CPU: measured there (docs/performance.md, 2026-12-03), an
  unconditional row with its language ID and perplexity costs 0.61 s, a translation row
  0.59 s, the find stage 210 s and loading 7 s. With ``choose_samples = 10``:
  55 x 10 + 19 x 41 = 1,329 rows, about 810 s, plus 160 translation rows (95 s), the
  find stage and the load, about 1,130 s (19 min); 16 would take 22 min. Ten samples per
  setting (an interval of about +-25 points) can still tell a sweep's settings apart
  where they differ most, and a worse choice only lowers the held-out figure; it does
  not bias it.

  Attributes:
    languages: Target languages (scored by the find stage).
    methods: Names in :data:`METHODS` (default :data:`DEFAULT_METHODS`).
    strengths: ``((method, (strength, ...)), ...)`` overriding a method's default sweep
      (``Method.strengths``).
    samples: Held-out unconditional samples of each chosen setting and of the baseline:
      the samples the report's best settings, intervals and tests come from.
    choose_samples: Unconditional samples of every setting (and of the baseline) on which
      each method's strength is chosen (:mod:`~lang_neuron_jax.compare.choice`).
    max_new_tokens, temperature: Unconditional sampling, as the paper's (64, 0.8).
    max_extra_broken: A setting is within the fluency cost when its broken share (empty,
      degenerate or incoherent samples) is at most this share above the baseline's on
      the same half (:func:`lang_neuron_jax.evaluation.cost.within_cost`, the rule the
      study's report applies too).
    batch_size: Generation rows per compiled call.
    translation_sets: ``(dataset, language)`` sets translated into; None for the
      FLORES-200 set of every target language that has one (the shipped sets' only
      dataset with all five non-English languages). English has none.
    translation_pairs: Pairs per set (0: no translation). Each method translates at the
      strength :func:`translation_strengths` chooses from the unconditional results.
    translation_tokens, translation_slots: Greedy new tokens (the paper: 128; rows stop
      after their first line) and rows decoded together, as in the control stage.
    seed: Base seed.
    options: ``((method, {argument: value}), ...)``: constructor arguments of a method
      (``("diffmean", {"layer": 9})``, ``("lape", {"intervention": "deactivate_others"})``).
  """

  languages: tuple[str, ...] = data.PAPER_LANGUAGES
  methods: tuple[str, ...] = DEFAULT_METHODS
  strengths: tuple[tuple[str, tuple[float, ...]], ...] = ()
  samples: int = 41
  choose_samples: int = 10
  max_new_tokens: int = 64
  temperature: float = 0.8
  max_extra_broken: float = cost.MAX_EXTRA_BROKEN
  batch_size: int = 128
  translation_sets: tuple[tuple[str, str], ...] | None = None
  translation_pairs: int = 8
  translation_tokens: int = 128
  translation_slots: int = 64
  seed: int = 0
  options: tuple[tuple[str, Mapping], ...] = ()

  def methods_built(self) -> dict[str, base.Method]:
    """``{name: Method}`` of every method compared, with its options."""
    return {m: make_method(m, self) for m in self.methods}

  def sweep(self) -> dict[str, tuple[float, ...]]:
    """``{method: strengths}`` of every method compared."""
    override = dict(self.strengths)
    return {m: tuple(override.get(m, make_method(m).strengths)) for m in self.methods}

  def validate(self, scored_languages: Sequence[str], num_layers: int) -> None:
    """Raises a ValueError saying what to fix (before any forward pass)."""
    for m in dict(self.options):
      if m not in self.methods:
        raise ConfigError(f"Options given for {m!r}, which is not compared ({list(self.methods)}).")
    for method in self.methods_built().values():
      method.check_layers(num_layers)
    unknown = set(self.languages) - set(scored_languages)
    if unknown or not self.languages:
      raise ConfigError(f"Target languages {sorted(unknown) or '(none)'} are not among the "
                       f"scored languages {list(scored_languages)}.")
    if not self.methods:
      raise ConfigError("Give at least one method.")
    for m, values in dict(self.strengths).items():
      if m not in self.methods:
        raise ConfigError(f"Strengths given for {m!r}, which is not compared ({list(self.methods)}).")
      if not values:
        raise ConfigError(f"Give at least one strength for {m!r}.")
    for m, values in self.sweep().items():
      for v in values:
        make_method(m).check_strength(v)
    for name in ("samples", "choose_samples", "max_new_tokens", "batch_size", "translation_tokens",
                 "translation_slots"):
      if getattr(self, name) < 1:
        raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
    # Checked here, not when the choice first applies it after the choosing half's
    # generation: a NaN bound makes every setting fail it, one outside [0, 1] makes it
    # pass everything or nothing, and either would surface only after minutes of work.
    bound = self.max_extra_broken
    if (isinstance(bound, bool) or not isinstance(bound, (int, float))
        or not np.isfinite(bound) or not 0 <= bound <= 1):
      raise ConfigError(f"max_extra_broken must be a share in [0, 1] (how much more often "
                        f"than the baseline's a setting's samples may break), got {bound!r}.")
    if self.translation_pairs < 0:
      raise ConfigError(f"translation_pairs must not be negative, got {self.translation_pairs}.")
    shipped = data.available_translation_sets()
    for dataset, lang in self.sets():
      if (dataset, lang) not in shipped:
        raise ConfigError(f"No translation set {dataset}_en_{lang}; shipped: "
                         f"{[f'{d}_en_{l}' for d, l in shipped]}.")
      if lang not in self.languages:
        raise ConfigError(f"Translation set {dataset}_en_{lang} targets {lang!r}, which is "
                         f"not a target language ({list(self.languages)}).")

  def split(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sample indices ``(choosing, held_out)`` of every condition
    (:func:`~lang_neuron_jax.compare.choice.split_samples`, fixed by ``seed``)."""
    return choice.split_samples(self.choose_samples, self.samples, self.seed)

  def sets(self) -> list[tuple[str, str]]:
    """The ``(dataset, language)`` translation sets used (none when translation_pairs is 0)."""
    if not self.translation_pairs:
      return []
    if self.translation_sets is not None:
      return list(self.translation_sets)
    return [(d, l) for d, l in data.available_translation_sets()
            if d == "flores200" and l in self.languages]


def find_config(config: find.FindConfig, model_config, methods: Sequence[str]) -> find.FindConfig:
  """``config`` recording what every method needs, in the one forward pass."""
  sites, positive = [], []
  for m in methods:
    s, p = make_method(m).needs(model_config)
    sites += [x for x in s if x not in model_config.neuron_sites and x not in sites]
    positive += [x for x in p if x not in positive]
  return dataclasses.replace(config, extra_sites=tuple(sites), positive_sites=tuple(positive))
