"""The run report (report.html, `jaxcond.report`): self-contained, offline, complete on partial
workdirs, one-line CLI errors."""
import json
import os
import pathlib
import re
import sys

from PIL import Image

from jaxcond import grids, report, synthetic_io
from test_grids import CIFAR, _set


def _fake_workdir(d: pathlib.Path, *, results=True):
  d.mkdir(parents=True, exist_ok=True)
  (d / "config.json").write_text(json.dumps({
      "config": {"method": "dm", "ipc": 2, "steps": 6, "dataset": {"name": "cifar10"}},
      "config_hash": "abc", "versions": {"jax": "0.0", "jaxcond": "0.1"},
      "devices": ["cpu:0"], "platform": "cpu", "data_load_s": 1.5,
      "dataset_identity": "cifar10 (modified copy: image tree x, not the published pickles)",
      "command": "python -m jaxcond.condense --workdir <x> & 'y'"}))
  with open(d / "metrics.jsonl", "w") as f:
    for s in (2, 4, 6):
      f.write(json.dumps({"step": s, "loss": 1.0 / s, "loss/dm": 1.0 / s, "steps_in_interval": 2,
                          "step_time_s": 0.1 * s, "images_per_s": 100.0 / s}) + "\n")
    f.write('{"step": 8, "loss"')        # a killed run's half line
  with open(d / "eval.jsonl", "w") as f:
    f.write(json.dumps({"step": 6, "mean": 40.0, "std": 1.0, "num_nets": 2, "model": "convnet",
                        "protocol": "dm", "measured_on": "test"}) + "\n")
  sset = _set(names=list(CIFAR))
  synthetic_io.save(d / "synthetic.npz", sset)
  grids.save_set_grid(d / "synthetic.png", sset)
  (d / "images").mkdir(exist_ok=True)
  grids.save_set_grid(d / "images" / "init.png", sset)
  if results:
    for sub, src in (("eval", {"kind": "synthetic", "method": "dm"}),
                     ("random", {"kind": "baseline", "baseline": "random"})):
      (d / sub).mkdir()
      (d / sub / "results.json").write_text(json.dumps({
          "mean": 41.5, "std": 0.5, "protocol": "dm", "architecture": "convnet",
          "num_nets": 2, "ipc": 2, "measured_on": "test", "source": src}))


def _check_offline_and_complete(html_path: pathlib.Path):
  text = html_path.read_text()
  refs = report.referenced_files(text)
  assert refs
  for ref in refs:
    assert not re.match(r"^(https?:)?//", ref), ref
    assert (html_path.parent / ref).is_file(), ref
  assert "@import" not in text and "<script" not in text.lower() and "url(" not in text
  assert "<link" not in text.lower()
  return text, refs


def test_report_is_self_contained_and_names_only_existing_images(tmp_path):
  _fake_workdir(tmp_path)
  path = pathlib.Path(report.write(tmp_path))
  assert path == tmp_path / "report.html"
  text, refs = _check_offline_and_complete(path)
  assert {"report/loss.png", "report/accuracy.png", "report/speed.png",
          "synthetic.png", "images/init.png"} <= set(refs)
  for name in ("loss.png", "accuracy.png", "speed.png"):
    assert Image.open(tmp_path / "report" / name).size[0] > 300
  assert "41.50 ± 0.50" in text and "random baseline" in text and "synthetic set (dm)" in text
  assert "modified copy" in text and "&lt;x&gt; &amp; &#x27;y&#x27;" in text   # escaped


def test_report_without_matplotlib_still_writes_tables_and_grid(tmp_path, monkeypatch):
  _fake_workdir(tmp_path, results=False)
  for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
    monkeypatch.setitem(sys.modules, mod, None)
  text, refs = _check_offline_and_complete(pathlib.Path(report.write(tmp_path)))
  assert "pip install jaxcond[extras]" in text
  assert "synthetic.png" in refs and not any(r.startswith("report/") for r in refs)
  assert "No results.json" in text


def test_report_cli_errors_are_one_line(tmp_path, capsys):
  f = tmp_path / "file"
  f.write_text("x")
  assert report.main(["report", str(f)]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "not a folder" in err
  assert report.main(["report", str(tmp_path)]) == 2
  assert "not a jaxcond workdir" in capsys.readouterr().err
  _fake_workdir(tmp_path / "w")
  assert report.main(["report", str(tmp_path / "w")]) == 0


def test_report_links_grid_pages_beyond_the_inline_ones(tmp_path):
  _fake_workdir(tmp_path, results=False)
  os.remove(tmp_path / "synthetic.png")
  paths = grids.save_set_grid(tmp_path / "synthetic.png", _set(num_classes=150, ipc=1, hw=8,
                                                                ch=1))
  assert len(paths) == 8
  text, refs = _check_offline_and_complete(pathlib.Path(report.write(tmp_path)))
  names = [pathlib.Path(p).name for p in paths]
  assert all(n in refs for n in names)                      # every page reachable
  assert text.count("<img src='synthetic_p") == report.INLINE_PAGES
