"""examples/quickstart.ipynb executes end to end (on the embedded model, reduced settings)."""

import os

import nbformat
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "examples", "quickstart.ipynb")

# Same code, fewer texts and tokens: a CI-sized run of the real model, tokenizer,
# scoring, intervention and language ID.
REDUCED = {"POSITIVES": "8", "N": "200", "NEW_TOKENS": "6"}


def _reduce(source: str, workdir: str) -> str:
  lines = []
  for line in source.splitlines():
    name = line.split("=")[0].strip()
    if name in REDUCED:
      line = f"{name} = {REDUCED[name]}"
    elif name == "WORKDIR":
      line = f"WORKDIR = {workdir!r}"
    lines.append(line)
  return "\n".join(lines)


def test_quickstart_notebook_executes(tmp_path):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(params) == 1, "the notebook needs exactly one cell tagged 'parameters'"
  params[0].source = _reduce(params[0].source, str(tmp_path / "work"))
  for name, value in REDUCED.items():
    assert f"{name} = {value}" in params[0].source, f"parameter {name} not found"
  NotebookClient(nb, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  text = "".join(o.get("text", "") for o in outputs)
  assert "124,416 neurons" in text  # the embedded model's neuron count
  markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
  assert markdown.count("| none |") == 2  # both generation tables were drawn
  assert any("image/png" in o.get("data", {}) for o in outputs)  # the overlap heatmap
