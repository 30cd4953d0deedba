"""The same study on several models, side by side (what the README's "Across models" is).

  python experiments/reproduce.py --workdir=workdir/gemma
  python experiments/reproduce.py --model=qwen2.5-coder-0.5b --workdir=workdir/qwen
  python experiments/across_models.py --run=gemma3-270m=workdir/gemma \\
      --run=qwen2.5-coder-0.5b=workdir/qwen --out=workdir/across.md

Reads finished reproduce.py work directories of the same scale (quick, default or paper)
and writes the Markdown tables of lang_neuron_jax/report/across.py, with a figure of the
neurons' depth beside --out. Nothing is recomputed.
"""

import os

from absl import flags

from lang_neuron_jax.report import across
from lang_neuron_jax.runtime import cli

_RUNS = flags.DEFINE_multi_string("run", [], "NAME=WORKDIR of a finished reproduce.py run; "
                                  "give two or more.")
_OUT = flags.DEFINE_string("out", "workdir/across.md", "Markdown output; the depth figure "
                           "goes beside it (across_layers.png).")


def main(argv):
  del argv
  runs = across.runs_from_flags(_RUNS.value)
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  figure = os.path.join(os.path.dirname(os.path.abspath(_OUT.value)), "across_layers.png")
  across.layer_figure(runs, figure)
  with open(_OUT.value, "w") as f:
    f.write("# Across models\n\n" + across.report(runs) +
            f"\n![neurons by depth]({os.path.basename(figure)})\n")
  print(f"wrote {_OUT.value} and {figure}")


if __name__ == "__main__":
  cli.run(main)
