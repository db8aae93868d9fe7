"""The labelled, paged PNG grids of synthetic sets (`jaxcond.grids`): nearest-neighbour cells,
class labels, decoded multi-formation sets (IDC/M3D, arXiv 2205.14959), paging."""
import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxcond import grids, synthetic_io

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


@pytest.mark.parametrize("hw,ch,scale", [(32, 3, 2), (28, 1, 3), (8, 1, 8)])
def test_grid_cells_are_nearest_neighbour_enlargements(hw, ch, scale):
  sset = _set(num_classes=3, ipc=2, hw=hw, ch=ch, names=["a", "b", "c"])
  pages = grids.class_grid_pages([sset.pixels()[sset.y == c] for c in range(3)], "abc")
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
  page = grids.class_grid_pages([sset.pixels()[sset.y == c] for c in range(10)], CIFAR,
                                 title="t")[0]
  arr = np.asarray(page.convert("L"))
  cells = _cells_of(page)
  for c in range(10):
    x0, y0, _, h = cells[(c, 0)]
    label = arr[y0:y0 + h, :x0 - 4]
    assert (label < 128).sum() > 30, f"no label text in row {c}"   # dark text pixels


def test_multi_formation_sets_are_drawn_decoded(tmp_path):
  sset = _set(num_classes=2, ipc=1, decoded_per_class=4, names=["x", "y"])
  paths = grids.save_set_grid(tmp_path / "g.png", sset)
  assert paths == [str(tmp_path / "g.png")]
  pages = grids.class_grid_pages([sset.pixels()[sset.y == c] for c in range(2)], "xy")
  assert sorted(_cells_of(pages[0])) == [(c, j) for c in range(2) for j in range(4)]
  page = np.asarray(Image.open(paths[0]).convert("RGB"))
  (x0, y0, w, h) = _cells_of(pages[0])[(1, 3)]
  np.testing.assert_array_equal(page[y0:y0 + h, x0:x0 + w],
                                sset.pixels("train")[sset.y == 1][3].repeat(2, 0).repeat(2, 1))
  assert "decoded" in grids.set_title(sset)


def test_many_classes_are_paged_and_every_class_is_reachable(tmp_path):
  sset = _set(num_classes=45, ipc=1, hw=8, ch=1)
  grids.save_set_grid(tmp_path / "g.png", _set(num_classes=2, ipc=1, hw=8, ch=1))
  paths = grids.save_set_grid(tmp_path / "g.png", sset)
  assert [pathlib.Path(p).name for p in paths] == ["g_p01.png", "g_p02.png", "g_p03.png"]
  assert not (tmp_path / "g.png").exists()          # the stale one-page grid is gone
  assert grids.grid_files(tmp_path / "g.png") == paths
  pages = grids.class_grid_pages([sset.pixels()[sset.y == c] for c in range(45)],
                                  sset.class_names)
  seen = sorted({c for p in pages for c, *_ in p.info["cells"]})
  assert seen == list(range(45))
  # Back to one page: the pages are removed again.
  assert grids.save_set_grid(tmp_path / "g.png", _set(num_classes=2)) == [str(tmp_path / "g.png")]
  assert grids.grid_files(tmp_path / "g.png") == [str(tmp_path / "g.png")]


def test_large_images_are_reduced_and_long_classes_capped():
  x = np.zeros((30, 224, 224, 3), np.uint8)
  page = grids.class_grid_pages([x], ["big"])[0]
  cells = page.info["cells"]
  assert len(cells) == grids.MAX_PER_CLASS and cells[0][4] == 112
