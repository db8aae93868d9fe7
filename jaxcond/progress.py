"""Terminal and log output, one style everywhere a person waits or a run keeps a history.

Progress of long work (data decoding, baselines):

    bar = progress.Progress("decoding cifar10 train JPEGs", total=50000, unit="images")
    for i in ...:
      bar.update(1)          # or bar.update(n) / bar.set(done)
    bar.close()              # prints the final line (count, elapsed, rate)

Lines look like `decoding cifar10 train JPEGs: 12,288/50,000 images (25%) 2,410/s ETA 15.7s`.
They are rate-limited (`every` seconds, default 5; the first line waits `first` seconds, so
work that finishes quickly prints only its closing line or nothing at all). On a terminal the
line is redrawn in place (carriage return); anywhere else (a log file, a pipe, a notebook
capture) every update is a plain new line, so logs stay readable.

Quiet runs pass `enabled=False` (or `stream=None` with `JAXCOND_QUIET=1` in the environment).
`Progress` is thread-safe: decode worker threads may call `update` concurrently.

A condensation run's lines (`progress_line`, `Printer`, `Timer`), an evaluation's
(`passes_line`), `format_duration`, and the JSON-lines history files (`JsonlWriter`,
`read_jsonl`, `truncate_jsonl`) live here too.
"""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from typing import Any, Callable, Iterable, Optional, TypeVar

import numpy as np

from jaxcond import files

T = TypeVar("T")

DEFAULT_EVERY_S = 5.0
DEFAULT_FIRST_S = 2.0


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


def is_terminal(stream) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):
    return False


class Progress:
  """A counter that prints `what: done/total unit (pct) rate/s ETA` now and then (module doc).

  total: None when unknown (no percentage or ETA). log: a callable taking one line,
  instead of writing to `stream` (e.g. condense's `Printer`); lines then never use `\\r`.
  """

  def __init__(self, what: str, total: Optional[int] = None, *, unit: str = "",
               every: float = DEFAULT_EVERY_S, first: float = DEFAULT_FIRST_S,
               stream=None, log: Optional[Callable[[str], None]] = None,
               enabled: bool = True, clock: Callable[[], float] = time.monotonic):
    self.what = what
    self.total = None if total is None else int(total)
    self.unit = unit
    self.every = float(every)
    self.first = float(first)
    self.log = log
    self.stream = stream if stream is not None else sys.stderr
    self.enabled = enabled and not (log is None and os.environ.get("JAXCOND_QUIET"))
    self.clock = clock
    self.done = 0
    self.start = clock()
    self._next = self.start + self.first
    self._lock = threading.Lock()
    self._inplace = log is None and is_terminal(self.stream)
    self._printed = False
    self._closed = False

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    self.close(ok=exc_type is None)

  def line(self, final: bool = False) -> str:
    """The text of one progress line (also used by tests)."""
    elapsed = max(self.clock() - self.start, 1e-9)
    unit = f" {self.unit}" if self.unit else ""
    rate = self.done / elapsed
    if self.total:
      pct = 100.0 * self.done / self.total
      text = f"{self.what}: {self.done:,}/{self.total:,}{unit} ({pct:.0f}%)"
    else:
      text = f"{self.what}: {self.done:,}{unit}"
    shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
    if final:
      return text + f" in {format_duration(elapsed)} ({shown}/s)"
    text += f" {shown}/s"
    if self.total and rate > 0:
      text += f" ETA {format_duration((self.total - self.done) / rate)}"
    return text

  def _emit(self, text: str, final: bool = False) -> None:
    if self.log is not None:
      self.log(text)
    elif self._inplace:
      self.stream.write("\r" + text + ("\n" if final else ""))
      self.stream.flush()
    else:
      self.stream.write(text + "\n")
      self.stream.flush()
    self._printed = True

  def update(self, n: int = 1) -> None:
    self.set(None, add=n)

  def set(self, done: Optional[int], *, add: int = 0) -> None:
    """Sets (or, with `add`, advances) the count; prints when a line is due."""
    with self._lock:
      self.done = int(done) if done is not None else self.done + int(add)
      if not self.enabled or self._closed:
        return
      now = self.clock()
      if now < self._next:
        return
      self._next = now + self.every
      text = self.line()
    self._emit(text)

  def close(self, ok: bool = True) -> None:
    """Final line (only if a progress line was printed, or the work took >= `first` s)."""
    with self._lock:
      if self._closed:
        return
      self._closed = True
      if not self.enabled:
        return
      due = self._printed or self.clock() - self.start >= self.first
      if not due:
        return
      text = self.line(final=ok) + ("" if ok else " (stopped)")
    self._emit(text, final=True)


def track(items: Iterable[T], what: str, total: Optional[int] = None, **kwargs) -> Iterable[T]:
  """`for x in track(items, "embedding"):` — a `Progress` over an iterable."""
  if total is None and hasattr(items, "__len__"):
    total = len(items)  # type: ignore[arg-type]
  with Progress(what, total, **kwargs) as bar:
    for x in items:
      yield x
      bar.update(1)


# ------------------------------------------------------------------ run lines

def progress_line(step: int, steps: int, loss: float, images_per_s: float,
                  eta_s: float, terms: dict[str, float] | None = None) -> str:
  """One terminal line: `step 200/20000  loss 1.234e-01 (dm 1.2e-01)  812 img/s  ETA 3m10s`."""
  width = len(str(steps))
  line = f"step {step:>{width}d}/{steps}  loss {loss:.4e}"
  if terms and len(terms) > 1:
    line += " (" + " ".join(f"{k} {v:.3e}" for k, v in terms.items()) + ")"
  line += f"  {images_per_s:,.0f} img/s  ETA {format_duration(eta_s)}"
  return line


def passes_line(passes_done: int, passes: int, elapsed_s: float) -> str:
  """`pass 120/1001  12.0s  ETA 1m28s`: an evaluation's training progress (plain lines)."""
  rate = elapsed_s / max(passes_done, 1)
  return (f"pass {passes_done}/{passes}  {format_duration(elapsed_s)}  "
          f"ETA {format_duration(rate * (passes - passes_done))}")


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


# ------------------------------------------------------------------ JSON-lines history

class JsonlWriter:
  """Appends one JSON object per line and flushes, so a killed run keeps its history.
  Through `jaxcond.files` (local or bucket paths); a failed append leaves no half line."""

  def __init__(self, path: str | os.PathLike, enabled: bool = True):
    self.path = os.fspath(path)
    self.enabled = enabled

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    files.append_text(self.path, json.dumps(_jsonable(record), sort_keys=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
  """The records of a JSON-lines file; a last line cut short (a machine that died while
  appending it) is skipped."""
  lines = [line for line in files.read_text(path).splitlines() if line.strip()]
  out = []
  for i, line in enumerate(lines):
    try:
      out.append(json.loads(line))
    except ValueError:
      if i < len(lines) - 1:
        raise
  return out


def truncate_jsonl(path: str | os.PathLike, *, max_step: int) -> None:
  """Drops records with `step > max_step` (lines a killed run wrote past its last
  checkpoint), so a resumed run's metrics file has no duplicated steps (atomic rewrite)."""
  path = os.fspath(path)
  if not files.exists(path):
    return
  keep = [r for r in read_jsonl(path) if r.get("step", 0) <= max_step]
  files.write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


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
