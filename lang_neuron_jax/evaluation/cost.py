"""The fluency cost of a steering setting, judged by what its samples are (issue 30).

A setting is **within the cost** when the share of its samples that are *broken* (do not
read as text: empty, degenerate or incoherent, :func:`measures.reads_as_text`, in any
language) is at most :data:`MAX_EXTRA_BROKEN` above the baseline's share on the same
prompts. Both the study's report and the method comparison judge settings with
:func:`within_cost`.

Why this rule and not the median perplexity (the comparison's old "at most twice the
baseline's"): a median says nothing about the samples on either side of it. Loops have
a low perplexity under the model that wrote them, so AP at N = 20,000 for German passed
at 88% degenerate samples (median 7.6); and a setting whose median sample is fluent may
break the other half. Counting broken samples judges each sample by the same rules as the
valid share, so neither a loop nor a salad can pass by its neighbours' perplexity.

Why not a per-sample combined score (CLaS-Bench: harmonic mean of language success and
output quality; AxBench: harmonic mean of judged scores, 0 if any is 0): with the
per-sample judgements binary, as ours are, both are 1 exactly when the sample is in the
target language *and* reads as text, so their mean over samples *is* the valid share,
which the study already reports and the comparison maximizes. What the valid share does
not see is breaking among the samples that stay in another language (a setting at 60%
valid and 40% salad would beat one at 55% valid and 45% fluent English); the cost bound
adds exactly that. A graded quality score would need a second calibrated mapping from
perplexity to [0, 1] with no natural scale.

Why 0.25: the median rule let up to half of a setting's samples break; a quarter is
half of that, and at the study's sample counts it is well above the noise of a paired
difference (with 3 of 24 samples discordant by chance, the difference's standard error
is sqrt(3)/24 = 7 points, so 25 points is about 3.5 of them): a setting over the bound
breaks text, not just unluckily.
"""

from __future__ import annotations

import math
from typing import Mapping

from lang_neuron_jax.errors import ConfigError, UserError

MAX_EXTRA_BROKEN = 0.25


def within_cost(condition: Mapping, baseline: Mapping, *,
                max_extra_broken: float = MAX_EXTRA_BROKEN) -> bool:
  """Whether a setting's samples break at most ``max_extra_broken`` more often than the
  baseline's (at the bound counts as within).

  Args:
    condition: A condition's entry of ``metrics.summarize_unconditional`` (its
      ``broken_share``).
    baseline: The baseline's entry of the same summary.
    max_extra_broken: The bound, a share in [0, 1].

  Raises:
    ConfigError: ``max_extra_broken`` outside [0, 1] (or NaN).
    UserError: an entry without ``broken_share`` (summarized before issue 30).

  Example:
    >>> within_cost({"broken_share": 0.30}, {"broken_share": 0.08})
    True
  """
  if not (isinstance(max_extra_broken, (int, float)) and math.isfinite(max_extra_broken)
          and 0 <= max_extra_broken <= 1):
    raise ConfigError(f"max_extra_broken must be a share in [0, 1], got {max_extra_broken!r}.")
  for name, entry in (("condition", condition), ("baseline", baseline)):
    if entry.get("broken_share") is None:
      raise UserError(f"The {name} has no broken_share: summarize its records with "
                      "lang_neuron_jax.evaluation.metrics.summarize_unconditional.")
  # A small tolerance: shares are k/n floats, and "at the bound" must count as within.
  return condition["broken_share"] - baseline["broken_share"] <= max_extra_broken + 1e-12
