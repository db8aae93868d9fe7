"""Grids, the run report (report.html) and progress lines (issue 15, parts 1-3)."""
import io
import json
import os
import pathlib
import re
import sys

import numpy as np
import pytest
from PIL import Image

from jaxcond import progress, report, synthetic_io

CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck")


def _set(num_classes=10, ipc=2, hw=32, ch=3, decoded_per_class=0, names=None, seed=0):
  rng = np.random.default_rng(seed)
  stored = rng.normal(size=(num_classes, ipc, hw, hw, ch)).astype(np.float32)
  dec = (rng.normal(size=(num_classes, decoded_per_class, hw, hw, ch)).astype(np.float32)
         if decoded_per_class else None)
  return synthetic_io.make(stored, dec, mean=[0.5] * ch, std=[0.25] * ch, dataset="cifar10",
                           method="m3d" if dec is not None else "dm",
                           factor=2 if dec is not None else 1, steps=7,
                           class_names=names or ())


def _cells_of(page):
  return {(c, j): box for c, j, *box in page.info["cells"]}


# ------------------------------------------------------------------------------ grids

@pytest.mark.parametrize("hw,ch,scale", [(32, 3, 2), (28, 1, 3), (8, 1, 8)])
def test_grid_cells_are_nearest_neighbour_enlargements(hw, ch, scale):
  sset = _set(num_classes=3, ipc=2, hw=hw, ch=ch, names=["a", "b", "c"])
  pages = report.class_grid_pages([sset.pixels()[sset.y == c] for c in range(3)], "abc")
  assert len(pages) == 1
  page = np.asarray(pages[0].convert("RGB"))
  cells = _cells_of(pages[0])
  assert sorted(cells) == [(c, j) for c in range(3) for j in range(2)]
  px = sset.pixels()
  for (c, j), (x0, y0, w, h) in cells.items():
    assert w == h == hw * scale >= 64
    want = px[sset.y == c][j].repeat(scale, 0).repeat(scale, 1)
    got = page[y0:y0 + h, x0:x0 + w]
    np.testing.assert_array_equal(got, np.broadcast_to(want, got.shape[:2] + (want.shape[-1],))
                                  if ch == 3 else np.repeat(want, 3, axis=-1))


def test_grid_rows_carry_class_labels():
  sset = _set(names=list(CIFAR))
  page = report.class_grid_pages([sset.pixels()[sset.y == c] for c in range(10)], CIFAR,
                                 title="t")[0]
  arr = np.asarray(page.convert("L"))
  cells = _cells_of(page)
  for c in range(10):
    x0, y0, _, h = cells[(c, 0)]
    label = arr[y0:y0 + h, :x0 - 4]
    assert (label < 128).sum() > 30, f"no label text in row {c}"   # dark text pixels


def test_multi_formation_sets_are_drawn_decoded(tmp_path):
  sset = _set(num_classes=2, ipc=1, decoded_per_class=4, names=["x", "y"])
  paths = report.save_set_grid(tmp_path / "g.png", sset)
  assert paths == [str(tmp_path / "g.png")]
  pages = report.class_grid_pages([sset.pixels()[sset.y == c] for c in range(2)], "xy")
  assert sorted(_cells_of(pages[0])) == [(c, j) for c in range(2) for j in range(4)]
  page = np.asarray(Image.open(paths[0]).convert("RGB"))
  (x0, y0, w, h) = _cells_of(pages[0])[(1, 3)]
  np.testing.assert_array_equal(page[y0:y0 + h, x0:x0 + w],
                                sset.pixels("train")[sset.y == 1][3].repeat(2, 0).repeat(2, 1))
  assert "decoded" in report.set_title(sset)


def test_many_classes_are_paged_and_every_class_is_reachable(tmp_path):
  sset = _set(num_classes=45, ipc=1, hw=8, ch=1)
  report.save_set_grid(tmp_path / "g.png", _set(num_classes=2, ipc=1, hw=8, ch=1))
  paths = report.save_set_grid(tmp_path / "g.png", sset)
  assert [pathlib.Path(p).name for p in paths] == ["g_p01.png", "g_p02.png", "g_p03.png"]
  assert not (tmp_path / "g.png").exists()          # the stale one-page grid is gone
  assert report.grid_files(tmp_path / "g.png") == paths
  pages = report.class_grid_pages([sset.pixels()[sset.y == c] for c in range(45)],
                                  sset.class_names)
  seen = sorted({c for p in pages for c, *_ in p.info["cells"]})
  assert seen == list(range(45))
  # Back to one page: the pages are removed again.
  assert report.save_set_grid(tmp_path / "g.png", _set(num_classes=2)) == [str(tmp_path / "g.png")]
  assert report.grid_files(tmp_path / "g.png") == [str(tmp_path / "g.png")]


def test_large_images_are_reduced_and_long_classes_capped():
  x = np.zeros((30, 224, 224, 3), np.uint8)
  page = report.class_grid_pages([x], ["big"])[0]
  cells = page.info["cells"]
  assert len(cells) == report.MAX_PER_CLASS and cells[0][4] == 112


# ------------------------------------------------------------------------------ report

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
  report.save_set_grid(d / "synthetic.png", sset)
  (d / "images").mkdir(exist_ok=True)
  report.save_set_grid(d / "images" / "init.png", sset)
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


# ------------------------------------------------------------------------------ progress

class _Clock:
  def __init__(self):
    self.t = 0.0

  def __call__(self):
    return self.t


class _Tty(io.StringIO):
  def isatty(self):
    return True


def test_progress_prints_rate_limited_plain_lines_off_a_terminal():
  clock, out = _Clock(), io.StringIO()
  bar = progress.Progress("decoding x", 1000, unit="images", every=5, first=2, stream=out,
                          clock=clock)
  bar.update(10)                   # t=0: before `first`
  clock.t = 2.5
  bar.update(90)                   # first line
  clock.t = 4.0
  bar.update(100)                  # rate-limited
  clock.t = 8.0
  bar.update(300)                  # second line
  clock.t = 10.0
  bar.set(1000)
  bar.close()
  lines = out.getvalue().splitlines()
  assert "\r" not in out.getvalue() and len(lines) == 3, lines
  assert lines[0].startswith("decoding x: 100/1,000 images (10%) 40/s ETA")
  assert lines[1].startswith("decoding x: 500/1,000 images (50%)")
  assert lines[2] == "decoding x: 1,000/1,000 images (100%) in 10.0s (100/s)"


def test_progress_is_silent_for_quick_work_and_redraws_on_a_terminal():
  clock, out = _Clock(), io.StringIO()
  with progress.Progress("quick", 5, stream=out, clock=clock) as bar:
    bar.update(5)
  assert out.getvalue() == ""
  clock, tty = _Clock(), _Tty()
  bar = progress.Progress("slow", 4, stream=tty, every=1, first=1, clock=clock)
  for i in range(4):
    clock.t = 1.0 + i * 1.5
    bar.update(1)
  bar.close()
  assert tty.getvalue().count("\r") == 5 and tty.getvalue().endswith("\n")


def test_progress_log_callable_and_track():
  got, clock = [], _Clock()

  def items():
    for i in range(3):
      clock.t += 3.0
      yield i

  assert list(progress.track(items(), "embedding", 3, log=got.append, every=0,
                             first=0, clock=clock)) == [0, 1, 2]
  assert got[-1].startswith("embedding: 3/3 (100%) in") and len(got) == 4


def test_report_links_grid_pages_beyond_the_inline_ones(tmp_path):
  _fake_workdir(tmp_path, results=False)
  os.remove(tmp_path / "synthetic.png")
  paths = report.save_set_grid(tmp_path / "synthetic.png", _set(num_classes=150, ipc=1, hw=8,
                                                                ch=1))
  assert len(paths) == 8
  text, refs = _check_offline_and_complete(pathlib.Path(report.write(tmp_path)))
  names = [pathlib.Path(p).name for p in paths]
  assert all(n in refs for n in names)                      # every page reachable
  assert text.count("<img src='synthetic_p") == report.INLINE_PAGES
