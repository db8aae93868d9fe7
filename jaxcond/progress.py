"""One progress style for every place a person waits: data decoding, baselines, evaluation.

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
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, Iterable, Optional, TypeVar

T = TypeVar("T")

DEFAULT_EVERY_S = 5.0
DEFAULT_FIRST_S = 2.0


def _duration(seconds: float) -> str:
  from jaxcond.report import format_duration  # pylint: disable=g-import-not-at-top
  return format_duration(seconds)


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
      return text + f" in {_duration(elapsed)} ({shown}/s)"
    text += f" {shown}/s"
    if self.total and rate > 0:
      text += f" ETA {_duration((self.total - self.done) / rate)}"
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
