"""Run outputs: PNG grids of synthetic sets, JSON-lines metrics, terminal progress lines.

Grids follow DM's `save_image` convention (methods.md §2.2): images are de-normalised
(x·std + mean), clipped to [0, 1], one row per class.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Sequence

import numpy as np


def denormalize(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """Normalised NHWC images -> [0, 1] (clipped) for display."""
  x = np.asarray(x, np.float32) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
  return np.clip(x, 0.0, 1.0)


def grid_image(images: np.ndarray, *, max_classes: int = 100, max_per_class: int = 20,
               pad: int = 1, upscale: int | None = None) -> np.ndarray:
  """`[C, n, H, W, ch]` images in [0, 1] -> one uint8 `[rows, cols, 3|1]` mosaic.

  One row per class, `n` columns. Very large sets are cut to the first `max_classes`
  classes and `max_per_class` images per class so the PNG stays viewable. Small images
  (< 32 px) are upscaled by an integer factor with nearest-neighbour so they are legible.
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 5:
    raise ValueError(f"grid_image expects [C, n, H, W, ch], got shape {images.shape}")
  images = images[:max_classes, :max_per_class]
  c, n, h, w, ch = images.shape
  if upscale is None:
    upscale = max(1, 32 // max(h, w))
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
  from PIL import Image  # pylint: disable=g-import-not-at-top
  canvas = grid_image(images, **kwargs)
  if canvas.shape[-1] == 1:
    canvas = canvas[..., 0]
  path = os.fspath(path)
  tmp = path + ".tmp.png"
  Image.fromarray(canvas).save(tmp)
  os.replace(tmp, path)
  return path


class JsonlWriter:
  """Appends one JSON object per line and flushes, so a killed run keeps its history."""

  def __init__(self, path: str | os.PathLike, enabled: bool = True):
    self.path = os.fspath(path)
    self.enabled = enabled

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(_jsonable(record), sort_keys=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def truncate_jsonl(path: str | os.PathLike, *, max_step: int) -> None:
  """Drops records with `step > max_step` (lines a killed run wrote past its last
  checkpoint), so a resumed run's metrics file has no duplicated steps."""
  path = os.fspath(path)
  if not os.path.exists(path):
    return
  keep = [r for r in read_jsonl(path) if r.get("step", 0) <= max_step]
  with open(path, "w", encoding="utf-8") as f:
    for r in keep:
      f.write(json.dumps(r) + "\n")


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, (np.floating, float)):
    x = float(x)
    return x if math.isfinite(x) else str(x)
  if isinstance(x, np.integer):
    return int(x)
  return x


def format_duration(seconds: float) -> str:
  """12.3s / 4m05s / 2h03m."""
  if not math.isfinite(seconds):
    return "?"
  seconds = max(0.0, seconds)
  if seconds < 60:
    return f"{seconds:.1f}s"
  m, s = divmod(int(round(seconds)), 60)
  if m < 60:
    return f"{m}m{s:02d}s"
  h, m = divmod(m, 60)
  return f"{h}h{m:02d}m"


def progress_line(step: int, steps: int, loss: float, images_per_s: float,
                  eta_s: float, terms: dict[str, float] | None = None) -> str:
  """One terminal line: `step 200/20000  loss 1.234e-01 (dm 1.2e-01)  812 img/s  ETA 3m10s`."""
  width = len(str(steps))
  line = f"step {step:>{width}d}/{steps}  loss {loss:.4e}"
  if terms and len(terms) > 1:
    line += " (" + " ".join(f"{k} {v:.3e}" for k, v in terms.items()) + ")"
  line += f"  {images_per_s:,.0f} img/s  ETA {format_duration(eta_s)}"
  return line


class Printer:
  """Terminal output that respects `quiet` and prints only on process 0."""

  def __init__(self, quiet: bool = False, enabled: bool = True, stream=None):
    self.quiet = quiet
    self.enabled = enabled
    self.stream = stream or sys.stdout

  def __call__(self, msg: str, *, force: bool = False) -> None:
    if self.enabled and (force or not self.quiet):
      print(msg, file=self.stream, flush=True)


class Timer:
  """Wall-clock interval timer (host side; only used for reporting, never for keys)."""

  def __init__(self):
    self.t = time.perf_counter()

  def lap(self) -> float:
    now = time.perf_counter()
    dt, self.t = now - self.t, now
    return dt
