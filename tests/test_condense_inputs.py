"""Inputs that cannot fool a condensation run: workdirs, counts, the NaN stop message and
the end of a run (its identity line, grids, report), each a one-line error before any
long work. The data files' identity checks are in tests/test_data_identity.py."""
import json
import pathlib

import pytest

from jaxcond import condense, configs, grids, report, steps
from jaxcond.errors import ConfigError

from conftest import load_experiment
from test_condense import nan_after

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(**overrides):
  c = load_experiment("quickstart.py:method=dm")
  base = {"steps": 2, "checkpoint_every": 0, "log_every": 1, "batch_real": 8, "ipc": 2,
          "model.width": 8, "eval.num_nets": 0, "quiet": True}
  for key, value in {**base, **overrides}.items():
    configs.set_field(c, key, value, source="test")
  return c


def _no_data(monkeypatch):
  def boom(*args, **kwargs):
    raise AssertionError("data were touched before the workdir was checked")
  monkeypatch.setattr(condense.realdata, "open_source", boom)


# ------------------------------------------------------------------------------ workdir

def test_workdir_that_is_a_file_fails_before_loading(tmp_path, monkeypatch):
  _no_data(monkeypatch)
  f = tmp_path / "out"
  f.write_text("")
  with pytest.raises(ConfigError, match=r"^workdir: .*out is a file, not a folder"):
    condense.run(tiny_config(), str(f))
  with pytest.raises(ConfigError, match=r"^workdir: cannot create .*sub: .*out is a file$"):
    condense.run(tiny_config(), str(f / "sub"))


def test_unwritable_workdir_message(tmp_path, monkeypatch):
  """A folder the process may not write to (os.access says no; the tests run as root, who
  may write anywhere, so the answer is simulated) fails before any data is read."""
  _no_data(monkeypatch)
  (tmp_path / "ro").mkdir()
  monkeypatch.setattr(condense.os, "access", lambda *a: False)
  with pytest.raises(ConfigError, match=r"^workdir: .*ro is not writable$"):
    condense.run(tiny_config(), str(tmp_path / "ro"))
  with pytest.raises(ConfigError, match=r"cannot be created \(.* is not writable\)"):
    condense.check_workdir(str(tmp_path / "new" / "deeper"))


def test_count_errors_stop_before_the_plan_compiles(tmp_path, monkeypatch):
  """An ipc or batch_real larger than the dataset's smallest class (known from the
  registry) is refused before the plan compiles anything or any data is read."""
  _no_data(monkeypatch)

  def no_plan(*args, **kwargs):
    raise AssertionError("the plan compiled before the count check")

  monkeypatch.setattr(condense.plan_lib, "make_plan", no_plan)
  with pytest.raises(ConfigError, match=r"^ipc: 200 images per class is larger than the "
                                        r"smallest class of the standard digits train split"):
    condense.run(tiny_config(ipc=200), str(tmp_path / "a"))
  with pytest.raises(ConfigError, match=r"^batch_real: 130 is larger .* which has 129 "):
    condense.run(tiny_config(batch_real=130, **{"dataset.holdout": 10}), str(tmp_path / "b"))


def test_check_workdir_accepts_new_and_existing_folders(tmp_path):
  condense.check_workdir(str(tmp_path))
  condense.check_workdir(str(tmp_path / "a" / "b"))
  assert not (tmp_path / "a").exists()          # a check, not a mkdir


def test_cli_workdir_file_is_one_line(tmp_path, capsys):
  f = tmp_path / "out"
  f.write_text("")
  rc = condense.main(["condense", "--config", str(ROOT / "experiments" / "quickstart.py"),
                      "--workdir", str(f)])
  err = capsys.readouterr().err
  assert rc == 2 and err.count("\n") == 1
  assert err.startswith("error: workdir: ") and "is a file" in err


# ------------------------------------------------------------------------------ NaN stop

def test_nan_stop_without_a_checkpoint_says_there_is_none(tmp_path, monkeypatch):
  monkeypatch.setattr(steps, "make_bank_step", nan_after(1))
  with pytest.raises(condense.DivergedError) as err:
    condense.run(tiny_config(steps=4), str(tmp_path))
  msg = str(err.value)
  assert msg.startswith("step 1: loss is nan") and "\n" not in msg
  assert "No checkpoint was written" in msg and "step 0" not in msg
  assert not (tmp_path / "checkpoints").exists() or not any(
      p.name.isdigit() for p in (tmp_path / "checkpoints").iterdir())


# ------------------------------------------------------------- end of a run: report, identity

@pytest.mark.slow
def test_run_writes_identity_grids_and_report_and_survives_a_report_failure(tmp_path,
                                                                            monkeypatch):
  def broken(workdir, **_):
    raise RuntimeError("disk full")
  monkeypatch.setattr(report, "write", broken)
  lines = []

  class Log:
    def write(self, s):
      lines.append(s)

    def flush(self):
      pass

  out = condense.run(tiny_config(quiet=False), str(tmp_path), log=Log())
  assert out["step"] == 2 and (tmp_path / "synthetic.npz").exists()
  text = "".join(lines)
  assert "report not written (RuntimeError: disk full)" in text
  assert "python -m jaxcond.report" in text
  cfg = json.loads((tmp_path / "config.json").read_text())
  assert cfg["dataset_identity"] == "digits (scikit-learn's bundled copy)"
  for png in ("synthetic.png", "images/init.png"):
    assert grids.grid_files(tmp_path / png)
  monkeypatch.undo()
  html = pathlib.Path(report.write(tmp_path)).read_text()
  assert "digits (scikit-learn" in html and "synthetic.png" in html
