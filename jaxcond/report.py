"""Run outputs: PNG grids of synthetic sets, JSON-lines metrics, terminal progress lines.

Grids follow DM's `save_image` convention (the DM authors' code): images are de-normalised
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
  from PIL import Image  # pylint: disable=g-import-not-at-top
  canvas = grid_image(images, **kwargs)
  if canvas.shape[-1] == 1:
    canvas = canvas[..., 0]
  path = os.fspath(path)
  tmp = path + ".tmp.png"
  Image.fromarray(canvas).save(tmp)
  os.replace(tmp, path)
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
  from PIL import ImageFont  # pylint: disable=g-import-not-at-top
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


def class_grid_pages(per_class: Sequence[np.ndarray], class_names: Sequence[str], *,
                     title: str = "", classes_per_page: int = CLASSES_PER_PAGE,
                     max_per_class: int = MAX_PER_CLASS, min_cell: int = MIN_CELL,
                     max_cell: int = MAX_CELL) -> list:
  """Per-class uint8 images `[n_c, H, W, ch]` -> PIL pages: a title line, then one row per
  class labelled with its index and name, images enlarged to >= `min_cell` px with
  nearest-neighbour (pixels stay honest), `classes_per_page` rows per page."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  if len(per_class) != len(class_names):
    raise ValueError(f"{len(per_class)} classes of images for {len(class_names)} names")
  if not per_class:
    raise ValueError("class_grid_pages: no classes")
  shown = [np.asarray(p, np.uint8)[:max_per_class] for p in per_class]
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
  pages = []
  num_pages = -(-len(shown) // classes_per_page)
  for pi in range(num_pages):
    lo, hi = pi * classes_per_page, min(len(shown), (pi + 1) * classes_per_page)
    title_h = 2 * (font_size + 8)
    height = title_h + (hi - lo) * (ch_ + pad) + pad
    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    head = title + (f"  (page {pi + 1}/{num_pages}: classes {lo}-{hi - 1})"
                    if num_pages > 1 else "")
    draw.text((pad, 4), _fit_text(draw, head, title_font, width - 2 * pad),
              fill=(0, 0, 0), font=title_font)
    if note:
      draw.text((pad, 4 + font_size + 8), note, fill=(90, 90, 90), font=font)
    page.info["cells"] = []   # (class, column, x0, y0, width, height): tests read it back
    for r, c in enumerate(range(lo, hi)):
      y0 = title_h + r * (ch_ + pad) + pad
      total = len(per_class[c])
      name = str(class_names[c])
      label = _fit_text(draw, name if name == str(c) else f"{c}: {name}", font,
                        label_w - 2 * pad)
      draw.text((pad, y0 + ch_ // 2 - font_size), label, fill=(0, 0, 0), font=font)
      if total > len(shown[c]):
        draw.text((pad, y0 + ch_ // 2 + 2), f"{len(shown[c])} of {total} shown",
                  fill=(90, 90, 90), font=_font(max(10, font_size - 3)))
      if not len(shown[c]):
        continue
      big, _ = _cells(shown[c], min_cell, max_cell)
      for j, img in enumerate(big):
        arr = img[..., 0] if img.shape[-1] == 1 else img
        tile = Image.fromarray(arr).convert("RGB")
        page.paste(tile, (label_w + j * (cw + pad), y0))
        page.info["cells"].append((c, j, label_w + j * (cw + pad), y0, cw, ch_))
    pages.append(page)
  return pages


def page_paths(path: str | os.PathLike, num_pages: int) -> list[str]:
  """`dir/x.png` for one page; `dir/x_p01.png`, `dir/x_p02.png`, ... for more."""
  path = os.fspath(path)
  if num_pages <= 1:
    return [path]
  stem, ext = os.path.splitext(path)
  return [f"{stem}_p{i + 1:02d}{ext or '.png'}" for i in range(num_pages)]


def grid_files(path: str | os.PathLike) -> list[str]:
  """The PNG files a `save_set_grid(path, ...)` wrote: `path`, or its `_pNN` pages."""
  import glob  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  stem, ext = os.path.splitext(path)
  pages = sorted(glob.glob(glob.escape(stem) + "_p[0-9][0-9]" + (ext or ".png")))
  return ([path] if os.path.exists(path) else []) + pages


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
      os.remove(old)
  for page, p in zip(pages, paths):
    tmp = p + ".tmp.png"
    page.save(tmp, optimize=False)
    os.replace(tmp, p)
  return paths


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


# ------------------------------------------------------------------ the run report (HTML)
#
# `python -m jaxcond.report WORKDIR` -> WORKDIR/report.html + WORKDIR/report/*.png. The page
# is self-contained: inline CSS, no scripts, no fonts, images as relative PNG paths, so it
# opens from a laptop copy of the folder with no network.

REPORT_HTML = "report.html"
REPORT_DIR = "report"
PLOTS_HINT = "plots need matplotlib: pip install jaxcond[extras]"
INLINE_PAGES = 5       # grid pages shown in the page; further pages are linked

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px;
 color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:28px;
 border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee;margin:4px 0} .muted{color:#777;font-size:13px}
details{margin:6px 0} code{background:#f4f4f4;padding:1px 3px}
.grids{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
"""


def _read_json(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _read_jsonl_safe(path) -> list[dict]:
  """Records of a JSONL file; a half-written last line (killed run) is skipped."""
  out = []
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        try:
          if line.strip():
            out.append(json.loads(line))
        except ValueError:
          continue
  except OSError:
    pass
  return out


def _num(v) -> float:
  try:
    return float(v)
  except (TypeError, ValueError):
    return float("nan")


def _figure():
  """A matplotlib Figure on the Agg canvas (no pyplot, no global backend), or None."""
  try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  fig = Figure(figsize=(7.5, 3.6), dpi=100)
  FigureCanvasAgg(fig)
  return fig


def plot_losses(metrics: list[dict], path: str) -> str | None:
  """Loss and each objective term (`loss/<term>`) against step, log scale where positive."""
  fig = _figure()
  if fig is None or not metrics:
    return None
  ax = fig.add_subplot(1, 1, 1)
  terms = sorted({k for r in metrics for k in r if k.startswith("loss/")})
  keys = ["loss"] + (terms if len(terms) > 1 else [])    # one term is the loss itself
  positive = True
  for k in keys:
    pts = [(r["step"], _num(r.get(k))) for r in metrics if "step" in r and k in r]
    pts = [(s, v) for s, v in pts if math.isfinite(v)]
    if not pts:
      continue
    positive &= all(v > 0 for _, v in pts)
    ax.plot([s for s, _ in pts], [v for _, v in pts], marker="." if len(pts) < 30 else None,
            lw=2 if k == "loss" else 1.2,
            label=(f"loss ({terms[0].split('/', 1)[1]})" if k == "loss" and len(terms) == 1
                   else k if k == "loss" else k.split("/", 1)[1]))
  if positive:
    ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("objective (mean over classes)")
  ax.set_title("condensation loss per objective term")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  return path


def plot_accuracy(evals: list[dict], path: str) -> str | None:
  """Accuracy (mean ± std over nets) of the in-loop evaluations against step."""
  fig = _figure()
  pts = [(r["step"], _num(r.get("mean")), _num(r.get("std")) if r.get("std") is not None
          else 0.0) for r in evals if "step" in r and r.get("mean") is not None]
  if fig is None or not pts:
    return None
  ax = fig.add_subplot(1, 1, 1)
  ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
              marker="o", capsize=3, label="mean ± std over nets")
  best = [(r["step"], _num(r.get("best_mean"))) for r in evals if r.get("best_mean") is not None]
  if best:
    ax.plot([b[0] for b in best], [b[1] for b in best], "s--", label="best checkpoint")
  ax.set_xlabel("condensation step")
  ax.set_ylabel("test accuracy (%)")
  measured = next((r.get("measured_on") for r in evals if r.get("measured_on")), "test")
  ax.set_title(f"accuracy of nets trained on the set ({measured})")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  return path


def plot_speed(metrics: list[dict], path: str) -> str | None:
  """Seconds per step and images/s against step."""
  fig = _figure()
  pts = [(r["step"], _num(r.get("step_time_s")), _num(r.get("images_per_s")))
         for r in metrics if "step" in r and "step_time_s" in r]
  if fig is None or not pts:
    return None
  ax = fig.add_subplot(1, 1, 1)
  ax.plot([p[0] for p in pts], [p[1] for p in pts], color="C0", marker=".")
  ax.set_xlabel("step")
  ax.set_ylabel("s / step", color="C0")
  ax2 = ax.twinx()
  ax2.plot([p[0] for p in pts], [p[2] for p in pts], color="C1", marker=".")
  ax2.set_ylabel("images / s", color="C1")
  ax.set_title("step time (first interval includes warm-up)")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path)
  return path


def _esc(x) -> str:
  import html  # pylint: disable=g-import-not-at-top
  return html.escape(str(x), quote=True)


def _table(rows: Sequence[Sequence], header: Sequence[str] | None = None) -> str:
  out = ["<table>"]
  if header:
    out.append("<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>")
  for row in rows:
    cells = []
    for v in row:
      cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
      cells.append(f"<td{cls}>{_esc(_fmt(v))}</td>")
    out.append("<tr>" + "".join(cells) + "</tr>")
  out.append("</table>")
  return "\n".join(out)


def _fmt(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}" if math.isfinite(v) else str(v)
  if isinstance(v, (list, tuple)):
    return ", ".join(_fmt(x) for x in v)
  return "" if v is None else str(v)


def _flatten(d, prefix: str = "") -> list[tuple[str, Any]]:
  out = []
  for k, v in (d or {}).items():
    if isinstance(v, dict):
      out.extend(_flatten(v, f"{prefix}{k}."))
    else:
      out.append((f"{prefix}{k}", v))
  return out


def find_results(workdir: str) -> list[tuple[str, dict]]:
  """(relative path, record) of every results.json in `workdir` and its subfolders (the
  evaluations of the set and of baselines run with `--workdir` there), sorted by path."""
  found = []
  for root, dirs, names in os.walk(workdir):
    dirs[:] = sorted(d for d in dirs if d not in ("checkpoints", REPORT_DIR, "images"))
    if os.path.relpath(root, workdir).count(os.sep) >= 3:
      dirs[:] = []
    if "results.json" in names:
      rec = _read_json(os.path.join(root, "results.json"))
      if isinstance(rec, dict):
        found.append((os.path.relpath(os.path.join(root, "results.json"), workdir), rec))
  return sorted(found)


def _result_row(rel: str, rec: dict) -> list:
  src = rec.get("source") or {}
  if src.get("kind") == "baseline":
    what = f"{src.get('baseline')} baseline"
  elif src.get("kind") == "synthetic":
    what = f"synthetic set ({src.get('method') or '?'}{', decoded' if src.get('decoded') else ''})"
  else:
    what = "?"
  acc = (f"{_num(rec.get('mean')):.2f} ± {_num(rec.get('std')):.2f}"
         if rec.get("mean") is not None else "")
  best = (f"{_num(rec.get('best_mean')):.2f} ± {_num(rec.get('best_std')):.2f}"
          if rec.get("best_mean") is not None else "")
  return [what, rec.get("ipc"), rec.get("protocol"), rec.get("architecture"),
          rec.get("num_nets"), acc, best, rec.get("measured_on"), rel]


def write(workdir: str | os.PathLike, *, plots: bool = True) -> str:
  """Writes WORKDIR/report.html (+ WORKDIR/report/*.png) from what the run left there:
  config.json, metrics.jsonl, eval.jsonl, the grids, synthetic.npz, results.json files.
  Works on partial workdirs (a killed or running run). Returns the HTML path."""
  from jaxcond.errors import DataError  # pylint: disable=g-import-not-at-top
  workdir = os.fspath(workdir)
  if not os.path.isdir(workdir):
    raise DataError(f"{workdir}: not a folder (expected a jaxcond run's --workdir)")
  cfg = _read_json(os.path.join(workdir, "config.json")) or {}
  metrics = _read_jsonl_safe(os.path.join(workdir, "metrics.jsonl"))
  evals = _read_jsonl_safe(os.path.join(workdir, "eval.jsonl"))
  results = find_results(workdir)
  has_npz = os.path.isfile(os.path.join(workdir, "synthetic.npz"))
  if not (cfg or metrics or has_npz or results):
    raise DataError(f"{workdir}: no config.json, metrics.jsonl, synthetic.npz or "
                    "results.json here; not a jaxcond workdir")
  out_dir = os.path.join(workdir, REPORT_DIR)
  os.makedirs(out_dir, exist_ok=True)
  figures, plots_missing = [], False
  if plots:
    for name, fn, data, caption in (
        ("loss.png", plot_losses, metrics, "Loss per objective term"),
        ("accuracy.png", plot_accuracy, evals, "Accuracy during condensation"),
        ("speed.png", plot_speed, metrics, "Step time and throughput")):
      if not data:
        continue
      got = fn(data, os.path.join(out_dir, name))
      if got is None:
        plots_missing = True
      else:
        figures.append((caption, f"{REPORT_DIR}/{name}"))

  c = cfg.get("config", {})
  info = cfg.get("dataset_info", {})
  title = (f"{c.get('method', '?')} on {info.get('name') or c.get('dataset', {}).get('name', '?')}"
           f", ipc {c.get('ipc', '?')}")
  parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
           f"<style>{_CSS}</style></head><body>",
           f"<h1>{_esc(title)}</h1>",
           f"<p class='muted'>{_esc(os.path.abspath(workdir))} · report written "
           f"{_esc(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>"]

  # Summary.
  last = metrics[-1] if metrics else {}
  timed = [r for r in metrics if "step_time_s" in r]
  steady = timed[1:] or timed
  summary = [("steps done", last.get("step", "")),
             ("steps configured", c.get("steps", "")),
             ("final loss", last.get("loss", ""))]
  if steady:
    n = sum(r.get("steps_in_interval", 1) for r in steady)
    t = sum(r["step_time_s"] * r.get("steps_in_interval", 1) for r in steady)
    summary += [("step time (s, after the first interval)", t / max(n, 1)),
                ("images/s (after the first interval)",
                 float(np.mean([_num(r.get("images_per_s")) for r in steady])))]
  if evals:
    e = evals[-1]
    summary.append((f"accuracy at step {e.get('step')} (%)",
                    f"{_num(e.get('mean')):.2f} ± {_num(e.get('std')):.2f} "
                    f"({e.get('num_nets')} × {e.get('model')}, {e.get('protocol')} protocol)"))
  for k in ("data_load_s", "platform", "process_count", "resumed_from_step",
            "dataset_identity"):
    if k in cfg:
      summary.append((k.replace("_", " "), cfg[k]))
  if cfg.get("devices"):
    summary.append(("devices", f"{len(cfg['devices'])}: {cfg['devices'][0]}"
                    + (" …" if len(cfg["devices"]) > 1 else "")))
  parts += ["<h2>Summary</h2>", _table(summary)]

  # Results.
  parts.append("<h2>Evaluations (results.json)</h2>")
  if results:
    parts.append(_table([_result_row(rel, rec) for rel, rec in results],
                        ["trained on", "ipc", "protocol", "net", "nets", "accuracy % (last)",
                         "best checkpoint %", "measured on", "file"]))
  else:
    parts.append("<p class='muted'>No results.json in this folder. Evaluate with "
                 "<code>python -m jaxcond.evaluate --synthetic DIR/synthetic.npz --workdir "
                 "DIR/eval</code> (and <code>--baseline random|herding|kcenter --workdir "
                 "DIR/&lt;baseline&gt;</code> for baselines beside it), then rerun "
                 "<code>python -m jaxcond.report DIR</code>.</p>")
  if evals:
    parts.append("<p class='muted'>Evaluations during the run (eval.jsonl):</p>")
    parts.append(_table([[r.get("step"), _num(r.get("mean")), _num(r.get("std")),
                          r.get("num_nets"), r.get("model"), r.get("protocol"),
                          r.get("measured_on"), _num(r.get("wall_s"))] for r in evals],
                        ["step", "accuracy %", "std", "nets", "net", "protocol",
                         "measured on", "eval s"]))

  # Plots.
  parts.append("<h2>Curves</h2>")
  if plots_missing:
    parts.append(f"<p class='muted'>No plots: {_esc(PLOTS_HINT)}.</p>")
  elif not figures:
    parts.append("<p class='muted'>No metrics.jsonl / eval.jsonl yet.</p>")
  for caption, rel in figures:
    parts.append(f"<h3>{_esc(caption)}</h3><img src='{_esc(rel)}' alt='{_esc(caption)}'>")

  # Grids.
  parts.append("<h2>Synthetic set</h2>")
  final = grid_files(os.path.join(workdir, "synthetic.png"))
  init = grid_files(os.path.join(workdir, "images", "init.png"))
  if not final:
    parts.append("<p class='muted'>No final grid yet (synthetic.png).</p>")
  for i, p in enumerate(final):
    rel = os.path.relpath(p, workdir).replace(os.sep, "/")
    if i < INLINE_PAGES:
      parts.append(f"<img src='{_esc(rel)}' alt='final set {_esc(rel)}'>")
    else:   # ImageNet-1K: 50 pages; the rest are a click away
      parts.append(f"<a href='{_esc(rel)}'>{_esc(rel)}</a> ")
  if init:
    parts.append("<details><summary>initial set</summary>")
    for p in init:
      rel = os.path.relpath(p, workdir).replace(os.sep, "/")
      parts.append(f"<img src='{_esc(rel)}' alt='initial set {_esc(rel)}'>")
    parts.append("</details>")
  steps_png = sorted(f for f in os.listdir(os.path.join(workdir, "images"))
                     if f.startswith("step_") and f.endswith(".png")) \
      if os.path.isdir(os.path.join(workdir, "images")) else []
  if steps_png:
    parts.append(f"<p class='muted'>{len(steps_png)} checkpoint grid file(s) in images/: "
                 + ", ".join(f"<a href='images/{_esc(f)}'>{_esc(f)}</a>" for f in steps_png[-12:])
                 + ("" if len(steps_png) <= 12 else " (last 12 listed)") + "</p>")

  # Config and versions.
  parts.append("<h2>Config</h2>")
  if cfg.get("command"):
    parts.append(f"<p><code>{_esc(cfg['command'])}</code></p>")
  if cfg.get("config_hash"):
    parts.append(f"<p class='muted'>config hash {_esc(cfg['config_hash'])}</p>")
  if c:
    parts.append(f"<details><summary>all {len(_flatten(c))} fields</summary>"
                 + _table(_flatten(c), ["field", "value"]) + "</details>")
  if cfg.get("versions"):
    parts += ["<h2>Versions</h2>", _table(sorted(cfg["versions"].items()),
                                          ["package", "version"])]
  parts.append("</body></html>")
  path = os.path.join(workdir, REPORT_HTML)
  return files.write_text(path, "\n".join(parts) + "\n")


def referenced_files(html_text: str) -> list[str]:
  """Every src/href value in the page (what the tests check exists and is local)."""
  import re  # pylint: disable=g-import-not-at-top
  return re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""", html_text)


def _program():
  from jaxcond import cli  # pylint: disable=g-import-not-at-top
  return cli.Program(
      "report", "Write WORKDIR/report.html: config, loss/accuracy curves, grids, results.",
      examples=("python -m jaxcond.report runs/quickstart",),
      flags=(cli.flag("no_plots", "skip the matplotlib plots", action="store_true"),),
      config="none", workdir="positional")


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m jaxcond.report WORKDIR` (argv sys.argv-style); exit status as `jaxcond.cli`."""
  from jaxcond import cli  # pylint: disable=g-import-not-at-top

  def go(a):
    print(f"report: {write(a.workdir, plots=not a.flags.no_plots)}")
  return cli.main(_program(), go, argv)


if __name__ == "__main__":
  sys.exit(main())
