"""PNG grids of image sets: the labelled, paged class grids every run writes (`save_set_grid`)
and a plain mosaic (`grid_image`).

Grids follow DM's `save_image` convention (the DM authors' code, arXiv 2110.04181): images
are de-normalised (x·std + mean), clipped to [0, 1], one row per class. Pillow draws them
(imported where a grid is drawn: an optional dependency).
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Any, Sequence

import numpy as np

from jaxcond import files


def denormalize(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """Normalised NHWC images -> [0, 1] (clipped) for display."""
  x = np.asarray(x, np.float32) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
  return np.clip(x, 0.0, 1.0)


def grid_image(images: np.ndarray, *, max_classes: int = 100, max_per_class: int = 20,
               pad: int = 1, upscale: int | None = None) -> np.ndarray:
  """`[C, n, H, W, ch]` images in [0, 1] -> one uint8 `[rows, cols, 3|1]` mosaic (no labels;
  `class_grid_pages` draws the labelled, paged grids that runs write)."""
  images = np.asarray(images, np.float32)
  if images.ndim != 5:
    raise ValueError(f"grid_image expects [C, n, H, W, ch], got shape {images.shape}")
  images = images[:max_classes, :max_per_class]
  c, n, h, w, ch = images.shape
  if upscale is None:
    upscale = cell_scale(h, w)
  if upscale > 1:
    images = images.repeat(upscale, axis=2).repeat(upscale, axis=3)
    h, w = h * upscale, w * upscale
  canvas = np.ones((c * (h + pad) + pad, n * (w + pad) + pad, ch), np.float32)
  for i in range(c):
    for j in range(n):
      y0, x0 = pad + i * (h + pad), pad + j * (w + pad)
      canvas[y0:y0 + h, x0:x0 + w] = images[i, j]
  return np.round(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_grid(path: str | os.PathLike, images: np.ndarray, **kwargs) -> str:
  """Writes `grid_image(images)` as a PNG (Pillow); returns the path."""
  from PIL import Image  # pylint: disable=g-import-not-at-top  # Pillow: optional
  canvas = grid_image(images, **kwargs)
  if canvas.shape[-1] == 1:
    canvas = canvas[..., 0]
  path = os.fspath(path)
  with files.atomic_write(path) as f:
    Image.fromarray(canvas).save(f, format="PNG")
  return path


# ------------------------------------------------------------------ labelled class grids

MIN_CELL = 64          # px: a 28 or 32 px image is enlarged (nearest) to at least this
MAX_CELL = 128         # px: larger images (ImageNet) are shown reduced so grids stay small
CLASSES_PER_PAGE = 20  # rows per PNG; more classes go to _p01, _p02, ... pages
MAX_PER_CLASS = 20     # columns per row (the label says how many more the class has)


def cell_scale(h: int, w: int, min_cell: int = MIN_CELL) -> int:
  """Integer nearest-neighbour factor that makes a cell at least `min_cell` px."""
  return max(1, -(-min_cell // max(h, w, 1)))


def _font(size: int):
  from PIL import ImageFont  # pylint: disable=g-import-not-at-top  # Pillow: optional
  try:
    return ImageFont.load_default(size=size)
  except TypeError:           # Pillow < 10.1: the fixed bitmap font
    return ImageFont.load_default()


def _fit_text(draw, text: str, font, width: int) -> str:
  if draw.textlength(text, font=font) <= width:
    return text
  while text and draw.textlength(text + "…", font=font) > width:
    text = text[:-1]
  return text + "…"


def _cells(pixels: np.ndarray, min_cell: int, max_cell: int) -> tuple[np.ndarray, str]:
  """uint8 [n, H, W, ch] -> display cells (nearest enlargement or box reduction), note."""
  h, w = pixels.shape[1:3]
  if max(h, w) > max_cell:
    k = -(-max(h, w) // max_cell)
    hh, ww = h // k, w // k
    cropped = pixels[:, :hh * k, :ww * k].astype(np.float32)
    small = cropped.reshape(-1, hh, k, ww, k, pixels.shape[-1]).mean(axis=(2, 4))
    return np.round(small).astype(np.uint8), f"shown at 1/{k} size"
  k = cell_scale(h, w, min_cell)
  if k > 1:
    return pixels.repeat(k, axis=1).repeat(k, axis=2), f"enlarged {k}x (nearest)"
  return pixels, ""


@dataclasses.dataclass(frozen=True)
class _Layout:
  """Sizes shared by every page of one grid (cells, fonts, label column, page width)."""
  cell_h: int
  cell_w: int
  font_size: int
  font: Any
  title_font: Any
  pad: int
  label_w: int
  width: int
  note: str
  min_cell: int
  max_cell: int


def _layout(shown: list[np.ndarray], title: str, min_cell: int, max_cell: int) -> _Layout:
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top  # Pillow: optional
  ref = next((p for p in shown if p.size), None)
  if ref is None:
    raise ValueError("class_grid_pages: every class is empty")
  h, w, ch = ref.shape[1:]
  cells, note = _cells(np.zeros((1, h, w, ch), np.uint8), min_cell, max_cell)
  ch_, cw = cells.shape[1:3]
  cols = max(max(len(p) for p in shown), 1)
  font_size = max(12, min(18, ch_ // 4))
  font, title_font = _font(font_size), _font(font_size + 2)
  pad, label_w = 4, max(140, 9 * font_size)
  width = label_w + cols * (cw + pad) + pad
  measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  width = max(width, min(1600, int(measure.textlength(title, font=title_font)) + 260))
  return _Layout(ch_, cw, font_size, font, title_font, pad, label_w, width, note, min_cell,
                 max_cell)


def _draw_row(page, draw, lay: _Layout, c: int, y0: int, name: str, total: int,
              shown: np.ndarray) -> None:
  """Row of class `c` at height `y0`: its label (and "k of n shown"), then its cells."""
  from PIL import Image  # pylint: disable=g-import-not-at-top  # Pillow: optional
  fs, pad = lay.font_size, lay.pad
  label = _fit_text(draw, name if name == str(c) else f"{c}: {name}", lay.font,
                    lay.label_w - 2 * pad)
  draw.text((pad, y0 + lay.cell_h // 2 - fs), label, fill=(0, 0, 0), font=lay.font)
  if total > len(shown):
    draw.text((pad, y0 + lay.cell_h // 2 + 2), f"{len(shown)} of {total} shown",
              fill=(90, 90, 90), font=_font(max(10, fs - 3)))
  if not len(shown):
    return
  big, _ = _cells(shown, lay.min_cell, lay.max_cell)
  for j, img in enumerate(big):
    arr = img[..., 0] if img.shape[-1] == 1 else img
    tile = Image.fromarray(arr).convert("RGB")
    x0 = lay.label_w + j * (lay.cell_w + pad)
    page.paste(tile, (x0, y0))
    page.info["cells"].append((c, j, x0, y0, lay.cell_w, lay.cell_h))


def _page(lay: _Layout, title: str, pi: int, num_pages: int, lo: int, hi: int,
          per_class: Sequence[np.ndarray], class_names: Sequence[str],
          shown: list[np.ndarray]):
  """Page `pi` of `num_pages`: the title line (and the cell note), rows `lo`..`hi - 1`."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top  # Pillow: optional
  fs, pad = lay.font_size, lay.pad
  title_h = 2 * (fs + 8)
  height = title_h + (hi - lo) * (lay.cell_h + pad) + pad
  page = Image.new("RGB", (lay.width, height), (255, 255, 255))
  draw = ImageDraw.Draw(page)
  head = title + (f"  (page {pi + 1}/{num_pages}: classes {lo}-{hi - 1})"
                  if num_pages > 1 else "")
  draw.text((pad, 4), _fit_text(draw, head, lay.title_font, lay.width - 2 * pad),
            fill=(0, 0, 0), font=lay.title_font)
  if lay.note:
    draw.text((pad, 4 + fs + 8), lay.note, fill=(90, 90, 90), font=lay.font)
  page.info["cells"] = []   # (class, column, x0, y0, width, height): tests read it back
  for r, c in enumerate(range(lo, hi)):
    _draw_row(page, draw, lay, c, title_h + r * (lay.cell_h + pad) + pad,
              str(class_names[c]), len(per_class[c]), shown[c])
  return page


def class_grid_pages(per_class: Sequence[np.ndarray], class_names: Sequence[str], *,
                     title: str = "", classes_per_page: int = CLASSES_PER_PAGE,
                     max_per_class: int = MAX_PER_CLASS, min_cell: int = MIN_CELL,
                     max_cell: int = MAX_CELL) -> list:
  """Per-class uint8 images `[n_c, H, W, ch]` -> PIL pages: a title line, then one row per
  class labelled with its index and name, images enlarged to >= `min_cell` px with
  nearest-neighbour (pixels stay honest), `classes_per_page` rows per page."""
  if len(per_class) != len(class_names):
    raise ValueError(f"{len(per_class)} classes of images for {len(class_names)} names")
  if not per_class:
    raise ValueError("class_grid_pages: no classes")
  shown = [np.asarray(p, np.uint8)[:max_per_class] for p in per_class]
  lay = _layout(shown, title, min_cell, max_cell)
  num_pages = -(-len(shown) // classes_per_page)
  return [_page(lay, title, pi, num_pages, pi * classes_per_page,
                min(len(shown), (pi + 1) * classes_per_page), per_class, class_names, shown)
          for pi in range(num_pages)]


def page_paths(path: str | os.PathLike, num_pages: int) -> list[str]:
  """`dir/x.png` for one page; `dir/x_p01.png`, `dir/x_p02.png`, ... for more."""
  path = os.fspath(path)
  if num_pages <= 1:
    return [path]
  stem, ext = os.path.splitext(path)
  return [f"{stem}_p{i + 1:02d}{ext or '.png'}" for i in range(num_pages)]


def grid_files(path: str | os.PathLike) -> list[str]:
  """The PNG files a `save_set_grid(path, ...)` wrote: `path`, or its `_pNN` pages."""
  path = os.fspath(path)
  stem, ext = os.path.splitext(path)
  if files.is_remote(path):
    folder, name = files.dirname(stem), files.basename(stem)
    pat = re.compile(re.escape(name) + r"_p[0-9][0-9]" + re.escape(ext or ".png") + "$")
    pages = ([files.join(folder, n) for n in files.listdir(folder) if pat.match(n)]
             if files.isdir(folder) else [])
  else:
    pages = sorted(glob.glob(glob.escape(stem) + "_p[0-9][0-9]" + (ext or ".png")))
  return ([path] if files.exists(path) else []) + pages


def set_title(sset, what: str = "") -> str:
  """`cifar10 · dm · ipc 10 · step 200` style heading for a set's grid."""
  parts = [sset.dataset or "?", sset.method or "?", f"ipc {sset.ipc}"]
  if sset.decoded:
    parts.append(f"factor {sset.factor}: {len(sset.y) // max(1, sset.num_classes)} "
                 "decoded images per class")
  if what:
    parts.append(what)
  return " · ".join(parts)


def save_set_grid(path: str | os.PathLike, sset, *, title: str | None = None,
                  which: str = "train", **kwargs) -> list[str]:
  """THE grid of a synthetic set (`jaxcond.synthetic_io.SyntheticSet`): the initial set,
  every checkpoint and the final set are drawn by this function. Multi-formation sets
  (M3D/IDC factor > 1, arXiv 2205.14959 §3) are shown decoded, the images networks train
  on (`which="stored"` shows the stored ones). Writes one PNG, or `_pNN` pages when the
  classes need more than one; returns the paths written (stale pages are removed)."""
  pixels = sset.pixels(which)
  labels = sset.y if which == "train" else sset.stored_y
  per_class = [pixels[labels == c] for c in range(sset.num_classes)]
  pages = class_grid_pages(per_class, list(sset.class_names),
                           title=set_title(sset) if title is None else title, **kwargs)
  paths = page_paths(path, len(pages))
  for old in grid_files(path):
    if old not in paths:
      files.remove(old)
  for page, p in zip(pages, paths):
    with files.atomic_write(p) as f:
      page.save(f, format="PNG", optimize=False)
  return paths
