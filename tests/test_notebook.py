"""notebooks/quickstart.ipynb: stored without outputs, runs offline end to end (nbclient), and
the README's notebook snippet is one of its cells and runs too."""
import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"

nbformat = pytest.importorskip("nbformat")


def _cells():
  return nbformat.read(NOTEBOOK, as_version=4).cells


def _readme_snippet() -> str:
  """The README's notebook block: the python block after "From a notebook"."""
  text = (ROOT / "README.md").read_text()
  tail = text[text.index("From a notebook"):]
  return re.search(r"```python\n(.*?)```", tail, re.S).group(1)


def test_stored_without_outputs():
  for cell in _cells():
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_readme_snippet_is_a_notebook_cell():
  """The README block, less its `WORKDIR = ...` line (the notebook sets WORKDIR in its first
  cell), is one of the notebook's cells, character for character."""
  snippet = "".join(line for line in _readme_snippet().splitlines(keepends=True)
                    if not line.startswith("WORKDIR = "))
  assert snippet.rstrip("\n") in [c.source for c in _cells() if c.cell_type == "code"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """The notebook run once by a Jupyter kernel (its cwd the notebooks folder, its outputs
  in a temporary WORKDIR); any error in a cell fails."""
  nbclient = pytest.importorskip("nbclient")
  workdir = tmp_path_factory.mktemp("notebook")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  env = {"JAXCOND_NOTEBOOK_WORKDIR": str(workdir)}
  old = {k: os.environ.get(k) for k in env}
  os.environ.update(env)       # the kernel inherits the environment
  try:
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
  finally:
    for k, v in old.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  return nb, workdir


def _text(nb) -> str:
  return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs if o.get("output_type") == "stream")


@pytest.mark.slow
def test_notebook_runs_and_shows_what_it_says(executed):
  nb, workdir = executed
  text = _text(nb)
  assert (workdir / "synthetic.npz").is_file() and "done: 200 steps" in text
  figures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if "image/png" in o.get("data", {})]
  assert len(figures) == 1                                  # loss curve and grid, inline
  mmds = {k: (float(a), float(b)) for k, a, b in re.findall(
      r"MMD² (\w+) +real vs synthetic ([\d.e-]+) +real vs random subset ([\d.e-]+)", text)}
  assert set(mmds) == {"linear", "gaussian"}
  for kernel, (syn, rand) in mmds.items():     # what condensation lowered
    assert syn < rand, (kernel, syn, rand)
  accuracy = float(re.search(r"dm convnetd2 x2: ([\d.]+) ±", text).group(1))
  assert accuracy > 80.0                                     # trained on 100 images


@pytest.mark.slow
def test_readme_snippet_runs(executed, capsys):
  _, workdir = executed
  code = _readme_snippet().replace('WORKDIR = "runs/quickstart"', f"WORKDIR = {str(workdir)!r}")
  exec(compile(code, "README.md", "exec"), {})       # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert "real vs random subset" in out and "dm convnetd2 x2" in out
