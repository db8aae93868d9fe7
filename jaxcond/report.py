"""The run report: `python -m jaxcond.report WORKDIR` -> WORKDIR/report.html and
WORKDIR/report/*.png (loss, accuracy and speed curves), with the run's grids, its
evaluations (results.json), config and versions.

The page is self-contained: inline CSS, no scripts, no fonts, images as relative PNG paths,
so it opens from a laptop copy of the folder with no network. The grids it shows are drawn
by `jaxcond.grids`; terminal lines and JSON-lines files are `jaxcond.progress`'s. Every
read and write goes through `jaxcond.files`, so WORKDIR may be a bucket (`gs://...`).
"""
from __future__ import annotations

import dataclasses
import html
import io
import json
import math
import os
import re
import sys
import time
from typing import Any, Sequence

import numpy as np

from jaxcond import cli, files, grids
from jaxcond.errors import DataError

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
    return files.read_json(path)
  except (OSError, ValueError):
    return None


def _read_jsonl_safe(path) -> list[dict]:
  """Records of a JSONL file; a half-written last line (killed run) is skipped."""
  out = []
  try:
    text = files.read_text(path)
  except (OSError, ValueError):
    return out
  for line in text.splitlines():
    try:
      if line.strip():
        out.append(json.loads(line))
    except ValueError:
      continue
  return out


def _save_figure(fig, path: str) -> str:
  """The figure as a PNG at `path`, written atomically through `jaxcond.files`."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  return files.write_bytes(path, buf.getvalue())


def _rel(p: str, workdir: str) -> str:
  """`p` relative to `workdir`, with `/` separators (local paths or URLs)."""
  if files.is_remote(workdir):
    return p[len(workdir.rstrip("/")) + 1:] if p.startswith(workdir.rstrip("/") + "/") else p
  return os.path.relpath(p, workdir).replace(os.sep, "/")


def _num(v) -> float:
  try:
    return float(v)
  except (TypeError, ValueError):
    return float("nan")


def _figure():
  """A matplotlib Figure on the Agg canvas (no pyplot, no global backend), or None."""
  try:
    # matplotlib: optional (jaxcond[extras]); without it the page has no plots.
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
  return _save_figure(fig, path)


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
  return _save_figure(fig, path)


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
  return _save_figure(fig, path)


def _esc(x) -> str:
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
  skip = ("checkpoints", REPORT_DIR, "images", "damaged_checkpoints")

  def visit(folder: str, depth: int) -> None:
    names = files.listdir(folder)
    if "results.json" in names:
      rec = _read_json(files.join(folder, "results.json"))
      if isinstance(rec, dict):
        found.append((_rel(files.join(folder, "results.json"), workdir), rec))
    if depth >= 4:       # as deep as a workdir's eval/<model>/... folders go
      return
    for name in names:
      sub = files.join(folder, name)
      if name not in skip and not name.endswith(".npz") and files.isdir(sub):
        visit(sub, depth + 1)

  visit(files.absolute(workdir), 0)
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


@dataclasses.dataclass(frozen=True)
class _Run:
  """What a workdir holds for the page (any part may be missing in a partial run)."""
  workdir: str
  cfg: dict
  metrics: list
  evals: list
  results: list

  @property
  def config(self) -> dict:
    return self.cfg.get("config", {})


def _read_run(workdir: str) -> _Run:
  if not files.isdir(workdir):
    raise DataError(f"{workdir}: not a folder (expected a jaxcond run's --workdir)")
  cfg = _read_json(files.join(workdir, "config.json")) or {}
  metrics = _read_jsonl_safe(files.join(workdir, "metrics.jsonl"))
  evals = _read_jsonl_safe(files.join(workdir, "eval.jsonl"))
  results = find_results(workdir)
  has_npz = files.exists(files.join(workdir, "synthetic.npz"))
  if not (cfg or metrics or has_npz or results):
    raise DataError(f"{workdir}: no config.json, metrics.jsonl, synthetic.npz or "
                    "results.json here; not a jaxcond workdir")
  return _Run(workdir, cfg, metrics, evals, results)


def _plots(run: _Run, out_dir: str) -> tuple[list[tuple[str, str]], bool]:
  """([(caption, relative PNG path)], whether a plot was skipped for lack of matplotlib)."""
  figures, plots_missing = [], False
  for name, fn, data, caption in (
      ("loss.png", plot_losses, run.metrics, "Loss per objective term"),
      ("accuracy.png", plot_accuracy, run.evals, "Accuracy during condensation"),
      ("speed.png", plot_speed, run.metrics, "Step time and throughput")):
    if not data:
      continue
    got = fn(data, files.join(out_dir, name))
    if got is None:
      plots_missing = True
    else:
      figures.append((caption, f"{REPORT_DIR}/{name}"))
  return figures, plots_missing


def _head(run: _Run) -> list[str]:
  c = run.config
  info = run.cfg.get("dataset_info", {})
  title = (f"{c.get('method', '?')} on {info.get('name') or c.get('dataset', {}).get('name', '?')}"
           f", ipc {c.get('ipc', '?')}")
  return [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
          f"<style>{_CSS}</style></head><body>",
          f"<h1>{_esc(title)}</h1>",
          f"<p class='muted'>{_esc(files.absolute(run.workdir))} · report written "
          f"{_esc(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>"]


def _summary(run: _Run) -> list[str]:
  cfg, metrics, evals = run.cfg, run.metrics, run.evals
  last = metrics[-1] if metrics else {}
  timed = [r for r in metrics if "step_time_s" in r]
  steady = timed[1:] or timed
  summary = [("steps done", last.get("step", "")),
             ("steps configured", run.config.get("steps", "")),
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
  return ["<h2>Summary</h2>", _table(summary)]


def _evaluations(run: _Run) -> list[str]:
  parts = ["<h2>Evaluations (results.json)</h2>"]
  if run.results:
    parts.append(_table([_result_row(rel, rec) for rel, rec in run.results],
                        ["trained on", "ipc", "protocol", "net", "nets", "accuracy % (last)",
                         "best checkpoint %", "measured on", "file"]))
  else:
    parts.append("<p class='muted'>No results.json in this folder. Evaluate with "
                 "<code>python -m jaxcond.evaluate --synthetic DIR/synthetic.npz --workdir "
                 "DIR/eval</code> (and <code>--baseline random|herding|kcenter --workdir "
                 "DIR/&lt;baseline&gt;</code> for baselines beside it), then rerun "
                 "<code>python -m jaxcond.report DIR</code>.</p>")
  if run.evals:
    parts.append("<p class='muted'>Evaluations during the run (eval.jsonl):</p>")
    parts.append(_table([[r.get("step"), _num(r.get("mean")), _num(r.get("std")),
                          r.get("num_nets"), r.get("model"), r.get("protocol"),
                          r.get("measured_on"), _num(r.get("wall_s"))] for r in run.evals],
                        ["step", "accuracy %", "std", "nets", "net", "protocol",
                         "measured on", "eval s"]))
  return parts


def _curves(figures: list[tuple[str, str]], plots_missing: bool) -> list[str]:
  parts = ["<h2>Curves</h2>"]
  if plots_missing:
    parts.append(f"<p class='muted'>No plots: {_esc(PLOTS_HINT)}.</p>")
  elif not figures:
    parts.append("<p class='muted'>No metrics.jsonl / eval.jsonl yet.</p>")
  for caption, rel in figures:
    parts.append(f"<h3>{_esc(caption)}</h3><img src='{_esc(rel)}' alt='{_esc(caption)}'>")
  return parts


def _grid_section(workdir: str) -> list[str]:
  parts = ["<h2>Synthetic set</h2>"]
  final = grids.grid_files(files.join(workdir, "synthetic.png"))
  init = grids.grid_files(files.join(workdir, "images", "init.png"))
  if not final:
    parts.append("<p class='muted'>No final grid yet (synthetic.png).</p>")
  for i, p in enumerate(final):
    rel = _rel(p, workdir)
    if i < INLINE_PAGES:
      parts.append(f"<img src='{_esc(rel)}' alt='final set {_esc(rel)}'>")
    else:   # ImageNet-1K: 50 pages; the rest are a click away
      parts.append(f"<a href='{_esc(rel)}'>{_esc(rel)}</a> ")
  if init:
    parts.append("<details><summary>initial set</summary>")
    for p in init:
      rel = _rel(p, workdir)
      parts.append(f"<img src='{_esc(rel)}' alt='initial set {_esc(rel)}'>")
    parts.append("</details>")
  images = files.join(workdir, "images")
  steps_png = sorted(f for f in files.listdir(images)
                     if f.startswith("step_") and f.endswith(".png")) \
      if files.isdir(images) else []
  if steps_png:
    parts.append(f"<p class='muted'>{len(steps_png)} checkpoint grid file(s) in images/: "
                 + ", ".join(f"<a href='images/{_esc(f)}'>{_esc(f)}</a>" for f in steps_png[-12:])
                 + ("" if len(steps_png) <= 12 else " (last 12 listed)") + "</p>")
  return parts


def _config_section(run: _Run) -> list[str]:
  cfg, c = run.cfg, run.config
  parts = ["<h2>Config</h2>"]
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
  return parts


def write(workdir: str | os.PathLike, *, plots: bool = True) -> str:
  """Writes WORKDIR/report.html (+ WORKDIR/report/*.png) from what the run left there:
  config.json, metrics.jsonl, eval.jsonl, the grids, synthetic.npz, results.json files.
  Works on partial workdirs (a killed or running run). Returns the HTML path."""
  run = _read_run(files.absolute(workdir))
  out_dir = files.join(run.workdir, REPORT_DIR)
  files.makedirs(out_dir)
  figures, plots_missing = _plots(run, out_dir) if plots else ([], False)
  parts = (_head(run) + _summary(run) + _evaluations(run) + _curves(figures, plots_missing)
           + _grid_section(run.workdir) + _config_section(run) + ["</body></html>"])
  path = files.join(run.workdir, REPORT_HTML)
  return files.write_text(path, "\n".join(parts) + "\n")


def referenced_files(html_text: str) -> list[str]:
  """Every src/href value in the page (what the tests check exists and is local)."""
  return re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""", html_text)


PROGRAM = cli.Program(
    "report", "Write WORKDIR/report.html: config, loss/accuracy curves, grids, results.",
    examples=("python -m jaxcond.report runs/quickstart",),
    flags=(cli.flag("no_plots", "skip the matplotlib plots", action="store_true"),),
    config="none", workdir="positional", workdir_help="a jaxcond run's --workdir")


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m jaxcond.report WORKDIR` (argv sys.argv-style); exit status as `jaxcond.cli`."""

  def go(a):
    print(f"report: {write(a.workdir, plots=not a.flags.no_plots)}")
  return cli.main(PROGRAM, go, argv)


if __name__ == "__main__":
  sys.exit(main())
