"""The find stage: corpus → responses → scores → selections → analyses, in a work directory.

Layout of ``workdir``::

    responses/{site}.npy     float32 [texts, layers, units] (memory-mapped)
    expertise.npz            every language's AP and statistics for every neuron
    expertise/{lang}.csv     the PyTorch reference's columns, every neuron by AP
    expertise/{lang}/expertise_limited_{N}_both.csv, ..._{N/2}_top.csv, ..._{N/2}_bottom.csv
                             the authors' make_limited_expert.py files for N
    analysis.json            overlaps, layer/site distributions, sufficiency check
    *.png                    figures
    run.json                 configuration, versions, git SHA, timings
    {scores,analysis}.stage.json, responses/responses.stage.json   the stages' stamps

The responses, the scores and the analysis are stages (:mod:`lang_neuron_jax.runtime.stages`):
each is skipped when it finished with the same configuration, model and inputs, and the
responses continue from their journal where an interrupted run stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
from tqdm import tqdm

from lang_neuron_jax.neurons import analysis, selection
from lang_neuron_jax.runtime import artifacts, distributed, stages
from lang_neuron_jax.generation import batching
from lang_neuron_jax.data import corpora as data
from lang_neuron_jax.find import scoring as expertise, responses
from lang_neuron_jax.neurons.expertise import neuron_index
from lang_neuron_jax.report import figures
from lang_neuron_jax.errors import ConfigError, UserError
from lang_neuron_jax.runtime.locks import workdir_locked


@dataclasses.dataclass(frozen=True, kw_only=True)
class FindConfig:
  """What the find stage does.

  Attributes:
    languages: Languages to score (two or more).
    corpus_dir: Directory of ``{lang}.json`` corpora (None: the paper's shipped texts).
    tfds_name: Or a TFDS dataset with one config per language (see
      :func:`lang_neuron_jax.data.corpora.load_corpus`), read from ``tfds_data_dir``.
    max_length: Texts with more tokens are dropped (as in the reference: 256).
    batch_size: Texts per forward pass.
    n: N, the total number of neurons in each language's set: the top N/2 plus the
      bottom N/2 by AP (the authors' ``expertise_limited_{N}_both``; the paper's main
      condition is 2,000). Its halves are the top and bottom sets whose overlaps and
      layers are analysed. Capped at the model's neuron count.
    sites: Neuron sites to record (None: the model's neuron sites, i.e. every linear
      projection in a block, as the reference).
    seed: Seed of random controls and the classifier split.
    chunk_size: Units per scoring call.
    positives_per_language: Use only the first this many positives of each language (and
      negatives in proportion), for quick runs; None uses the whole corpus.
    sufficiency_n: The sufficiency check classifies languages from the union of each
      language's top-``sufficiency_n`` neurons (vs as many random ones). Small, because
      a few thousand neurons of any kind identify the language.
    extra_sites: Sites whose responses are recorded in the same forward pass but not
      scored (other methods' inputs: ``resid`` for steering vectors, ``gate_act`` for LAPE).
    positive_sites: Sites whose per-text counts of positive tokens are recorded too
      (LAPE's statistic).
  """

  languages: tuple[str, ...] = data.PAPER_LANGUAGES
  corpus_dir: str | None = None
  tfds_name: str | None = None
  tfds_data_dir: str | None = None
  max_length: int = 256
  batch_size: int = 32
  n: int = 2000
  sites: tuple[str, ...] | None = None
  seed: int = 0
  chunk_size: int = expertise.DEFAULT_CHUNK
  positives_per_language: int | None = None
  sufficiency_n: int = 10
  extra_sites: tuple[str, ...] = ()
  positive_sites: tuple[str, ...] = ()

  def num_neurons(self, model_config) -> int:
    """How many neurons the stage scores on a model (needs only its config)."""
    sites = model_config.neuron_sites if self.sites is None else self.sites
    return neuron_index(model_config, sites).size

  def validate(self, model_config) -> None:
    """Raises a ConfigError saying what to fix for what the config alone decides (before
    any forward pass): two or more distinct languages, known sites, a valid N."""
    self.resolve(model_config)

  def resolve(self, model_config) -> "FindConfig":
    """This config checked against a model (:meth:`validate`) with ``n`` capped at its
    neuron count: the values the stage runs with, resolved here once. (The stage's
    fingerprint hashes the config as given, so a finished directory is reused.)"""
    if len(set(self.languages)) < 2 or len(set(self.languages)) != len(self.languages):
      raise ConfigError(f"Give two or more distinct languages, got {list(self.languages)}.")
    sites = model_config.neuron_sites if self.sites is None else self.sites
    unknown = set(sites + self.extra_sites + self.positive_sites) - set(model_config.site_widths)
    if unknown:
      raise ConfigError(f"Unknown sites {sorted(unknown)}; this model has "
                       f"{sorted(model_config.site_widths)}.")
    total = self.num_neurons(model_config)
    n = selection.cap_n(self.n, total, "both")
    selection.check_n(n, total, "both")
    return dataclasses.replace(self, n=n)


@dataclasses.dataclass(frozen=True)
class FindResult:
  """What the find stage gives the stages after it.

  Attributes:
    figures: ``{name: path}`` of the analysis figures.
    stamp: The scores stage's :class:`~lang_neuron_jax.runtime.stages.Stamp` (a fingerprint of
      the responses, languages and neurons); the control stage's fingerprint builds on it.
    responses: The responses (:class:`~lang_neuron_jax.find.responses.Responses`: every
      recorded site, positive counts, lengths), in the order of ``corpus.texts``.
  """

  corpus: data.Corpus
  expertise: selection.Expertise
  neurons: dict[str, selection.NeuronSet]
  analysis: dict
  dropped_texts: int
  stamp: stages.Stamp
  figures: dict[str, str]
  responses: responses.Responses | None = None


SCORES_FILE = "expertise.npz"
FIGURES = ("overlap_top", "overlap_bottom", "layers", "sites", "ap_histograms")


def load_scores(workdir: str, lm=None) -> tuple[selection.Expertise, stages.Stamp]:
  """The scores a finished find stage wrote in ``workdir``, and their stamp.

  With ``lm``, checks that they were computed on that model (and dtype).
  """
  path, stamp = os.path.join(workdir, SCORES_FILE), stages.recorded_stamp(workdir, "scores")
  if stamp is None or not os.path.exists(path):
    raise UserError(f"{workdir} holds no finished find stage ({SCORES_FILE} and its stamp); "
                    f"run experiments/find_neurons.py --workdir={workdir} first.")
  exp = selection.Expertise.load(path)
  if lm is not None:
    selection.check_model_id(exp.index, lm.model_id)
  return exp, stamp


def score_responses(resp: dict[str, np.ndarray], corpus: data.Corpus,
                    index: selection.NeuronIndex, *, chunk_size: int = expertise.DEFAULT_CHUNK,
                    progress: bool = True) -> selection.Expertise:
  """Every language's AP and statistics for every neuron of ``index``."""
  c, total = len(corpus.languages), index.size
  ap = np.empty((c, total), np.float32)
  stats = {k: np.empty((c, total), np.float32) for k in selection.STATISTICS}
  bar = tqdm(total=total, desc="scores", unit="neuron", disable=not progress)
  for site, offset in zip(index.sites, index.offsets):
    x = resp[site].reshape(resp[site].shape[0], -1)  # [M, L*U], a view of the memory map
    scores = expertise.score_units(x, corpus.positive, corpus.weights, chunk_size=chunk_size,
                                   progress=bar.update)
    span = slice(offset, offset + x.shape[1])
    ap[:, span] = scores["ap"]
    for k in selection.STATISTICS:
      stats[k][:, span] = scores[k]
  bar.close()
  return selection.Expertise(index, corpus.languages, ap, stats)


def _write_csv(exp: selection.Expertise, row: int, flat: np.ndarray, path: str) -> None:
  """The reference's ``expertise.csv`` columns (+ ``site``) for ``flat``, in that order."""
  site, layer, unit = exp.index.unflatten(flat)
  names = np.asarray(exp.index.sites)[site]
  cols = [exp.ap[row][flat]] + [exp.stats[k][row][flat] for k in selection.STATISTICS]
  with artifacts.atomic_file(path) as f:
    f.write("ap,on_p50,on_p90,off_mean,off_p50,layer,unit,site\n")
    for i in range(flat.size):
      f.write(",".join(f"{c[i]:.9g}" for c in cols) + f",{layer[i]},{unit[i]},{names[i]}\n")


def limited_file_names(n: int) -> dict[str, str]:
  """The authors' file name of each kind for N (``make_limited_expert.py``: the top and
  bottom files hold N/2 rows each, the both file N)."""
  return {"both": f"expertise_limited_{n}_both.csv",
          "top": f"expertise_limited_{n // 2}_top.csv",
          "bottom": f"expertise_limited_{n // 2}_bottom.csv"}


def write_reference_csv(exp: selection.Expertise, directory: str) -> None:
  """Per language, every neuron by AP, as the reference's ``expertise.csv``
  (``{directory}/{lang}.csv``)."""
  os.makedirs(directory, exist_ok=True)
  for row, lang in enumerate(exp.languages):
    _write_csv(exp, row, selection.ranking(exp.ap[row], True),
               os.path.join(directory, f"{lang}.csv"))


def write_limited_csv(exp: selection.Expertise, directory: str, n: int) -> None:
  """The authors' limited files for N, with the same rows as ``make_limited_expert.py``
  makes from the same scores: ``{directory}/{lang}/expertise_limited_{N}_both.csv`` (top
  N/2 by AP, then bottom N/2) and the ``_{N/2}_top`` and ``_{N/2}_bottom`` halves."""
  for row, lang in enumerate(exp.languages):
    os.makedirs(os.path.join(directory, lang), exist_ok=True)
    for kind, name in limited_file_names(n).items():
      chosen = selection.select(exp, lang, n if kind == "both" else n // 2, kind)
      _write_csv(exp, row, chosen.flat, os.path.join(directory, lang, name))


def analyse(exp: selection.Expertise, resp, corpus: data.Corpus, config: FindConfig,
            workdir: str) -> dict:
  """Overlaps, distributions, top tables, the sufficiency check and figures, for each
  language's set of N (its top N/2 and bottom N/2 halves separately for the overlaps)."""
  langs = exp.languages
  n = config.n  # resolved (FindConfig.resolve)
  half = n // 2
  top = {l: selection.select(exp, l, half, "top") for l in langs}
  bottom = {l: selection.select(exp, l, half, "bottom") for l in langs}
  both = {l: selection.select(exp, l, n, "both") for l in langs}
  overlap_top = analysis.overlap_matrix([top[l] for l in langs])
  overlap_bottom = analysis.overlap_matrix([bottom[l] for l in langs])
  layers = {l: analysis.layer_distribution(both[l]) for l in langs}
  sites = {l: analysis.site_distribution(both[l]) for l in langs}
  figures.overlap_heatmap(overlap_top, langs, os.path.join(workdir, "overlap_top.png"),
                          title=f"Overlap of the top-{half} neurons (N = {n})")
  figures.overlap_heatmap(overlap_bottom, langs, os.path.join(workdir, "overlap_bottom.png"),
                          title=f"Overlap of the bottom-{half} neurons (N = {n})")
  figures.layer_distribution(layers, os.path.join(workdir, "layers.png"),
                             title=f"Top-{half} + bottom-{half} neurons (N = {n}) per layer")
  figures.site_distribution(sites, exp.index.sites, os.path.join(workdir, "sites.png"))
  figures.ap_histograms({l: exp.ap[i] for i, l in enumerate(langs)},
                        os.path.join(workdir, "ap_histograms.png"))
  off_diagonal = ~np.eye(len(langs), dtype=bool)
  k = min(config.sufficiency_n, exp.index.size)
  chosen = selection.union([selection.select(exp, l, k, "top") for l in langs])
  control = selection.random_like(chosen, seed=config.seed)
  sufficiency = analysis.sufficiency_check(resp, chosen, control, corpus.language_of_text,
                                           seed=config.seed)
  tables = {}
  for l in langs:
    t = selection.select(exp, l, min(10, half), "top")
    tables[l] = [{"site": exp.index.sites[t.site[i]], "layer": int(t.layer[i]),
                  "unit": int(t.unit[i]), "ap": float(t.ap[i]),
                  "on_p50": float(t.stats["on_p50"][i]), "off_p50": float(t.stats["off_p50"][i])}
                 for i in range(len(t))]
  return {
      "languages": list(langs),
      "n": n,
      "overlap_top": overlap_top,
      "overlap_bottom": overlap_bottom,
      "max_overlap_between_languages": {
          "top": float(overlap_top[off_diagonal].max()),
          "bottom": float(overlap_bottom[off_diagonal].max())},
      "layers": layers,
      "sites": {l: dict(zip(exp.index.sites, sites[l].tolist())) for l in langs},
      "sufficiency": sufficiency,
      "top_neurons": tables,
      "mean_ap_of_top": {l: float(top[l].ap.mean()) for l in langs},
  }


@workdir_locked  # A second run on the same workdir is refused (lang_neuron_jax/runtime/locks.py).
def find_neurons(lm, config: FindConfig, workdir: str, *, progress: bool = True) -> FindResult:
  """Runs (or resumes) the find stage in ``workdir``; see the module docstring."""
  resolved = config.resolve(lm.config)
  model_id = lm.model_id
  os.makedirs(workdir, exist_ok=True)
  timings = artifacts.Timings()
  with timings.measure("load_and_tokenize"):
    corpus = data.load_corpus(config.languages, corpus_dir=config.corpus_dir,
                              tfds_name=config.tfds_name, tfds_data_dir=config.tfds_data_dir,
                              positives_per_language=config.positives_per_language)
    tokenized = batching.tokenize_texts(lm.tokenizer, corpus.texts, max_length=config.max_length)
    dropped = int((~tokenized.kept).sum())
    corpus = data.filter_corpus(corpus, tokenized.kept)
    sites = lm.config.neuron_sites if config.sites is None else config.sites
    index = neuron_index(lm.config, sites, model_id)

  with timings.measure("responses"):
    recorded = tuple(sites) + tuple(s for s in config.extra_sites if s not in sites)
    resp = responses.compute_responses(lm, tokenized.tokens, os.path.join(workdir, "responses"),
                                       sites=recorded, positive_sites=config.positive_sites,
                                       batch_size=config.batch_size, progress=progress)

  with timings.measure("scores"):
    scores = stages.Stage(workdir, "scores", model_id=model_id, inputs=[resp.stamp],
                          config={"languages": corpus.languages, "index": index.to_dict()})
    exp_path = scores.path(SCORES_FILE)
    read = functools.partial(selection.Expertise.load, exp_path)
    exp = scores.reuse(read)
    if exp is None:

      def write():  # Process 0 scores; the others read its file.
        exp = score_responses(resp, corpus, index, chunk_size=config.chunk_size,
                              progress=progress)
        with artifacts.atomic_file(exp_path, "wb") as f:
          exp.save(f)
        write_reference_csv(exp, scores.path("expertise"))
        return exp

      exp = scores.commit(write, read)

  n = resolved.n
  neurons = {lang: selection.select(exp, lang, n, "both") for lang in corpus.languages}

  def write_analysis():
    with timings.measure("analysis"):
      write_limited_csv(exp, os.path.join(workdir, "expertise"), n)
      result = analyse(exp, resp, corpus, resolved, workdir)
      artifacts.write_json(os.path.join(workdir, "analysis.json"), result)
    artifacts.write_run_json(workdir, stage="find", config=resolved, timings=timings,
                             extra={"model": model_id, "texts": len(corpus.texts),
                                    "dropped_texts": dropped, "neurons": index.size,
                                    "processes": distributed.process_count()})
    return result

  result_analysis = stages.Stage(workdir, "analysis", config=config, inputs=[scores.stamp]).commit(
      write_analysis, functools.partial(artifacts.read_json, os.path.join(workdir, "analysis.json")))
  return FindResult(corpus, exp, neurons, result_analysis, dropped, scores.stamp,
                    figures.existing(workdir, FIGURES), resp)
