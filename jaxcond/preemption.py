"""Stopping cleanly when the machine is taken away: SIGTERM and Ctrl-C (SIGINT).

Spot / preemptible TPU VMs and GPU hosts get SIGTERM and are gone about 30 seconds
later. A program that holds a `Preemption` finishes the unit of work it is in (one
condensation step; one result file of `continual` or `nas`), saves, prints one line and
exits with `EXIT_PREEMPTED` (3), distinct from done (0), failed (1) and bad input (2).
Re-running the same command resumes. A second Ctrl-C aborts at once (the default SIGINT
action: the shell reports status 130), losing at most the work since the last save.

Work with nothing to save half way (loading data, compiling, an evaluation, writing
outputs a re-run writes again) runs inside `immediate(line)`: a signal there stops at
once. On the command line (`command_line=True`) that stop prints the line, runs the
`cleanups` (the workdir lock) and ends the process with `os._exit(3)`, because an
exception raised out of interrupted XLA work (a compile, a running computation) can
crash the interpreter at exit (seen with jaxlib 0.10.2: a segfault after the traceback,
also for a plain KeyboardInterrupt). Library calls raise `PreemptedError` instead.

    with preemption.Preemption() as stop:
      with stop.immediate("preempted while loading: nothing to save; re-run ..."):
        load()                         # nothing to save yet: a signal stops at once
      for step in range(start, steps):
        state = update(state, step)
        if stop.should_stop(step + 1):   # every process gets the same answer
          save(state, step + 1)
          raise stop.error(f"preempted at step {step + 1}: ...")

One process: Python signal handlers set a flag that `should_stop` reads.

Several processes (`jax.distributed`): the processes must stop at the same step, or the
collectives of the next step hang and the checkpoint is written by some hosts only.
`should_stop` is then JAX's preemption sync point
(`jax.experimental.multihost_utils.reached_preemption_sync_point`, the coordination
service's preemption sync manager, on by default: `jax_enable_preemption_service`). Its
notifier catches SIGTERM itself (a C++ handler installed by `jax.distributed.initialize`),
tells the coordination service, and every process learns the first step id after the
fastest process's current one; all of them stop there. So SIGTERM is left to JAX, and a
first Ctrl-C is turned into a SIGTERM to this process. `should_stop` must then be called
by every process at every step with consecutive ids; ids count from the first call (the
protocol's counters start at 0, a resumed run's steps do not). In a multi-process run a
signal never stops work at once (`immediate` is a no-op): the processes first agree.

Programs: condense (stops after the current step, with a checkpoint), continual and nas
(between result files), evaluate (at once: one results.json, nothing to keep half way).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator

import jax
from jax.experimental import multihost_utils

from jaxcond.errors import JaxcondError

EXIT_PREEMPTED = 3
# The line of a stop while a program loads its data (nothing computed yet to save).
LOADING_DATA = ("preempted while loading the data: nothing to save; re-run the same command "
                "to resume")


class PreemptedError(JaxcondError):
  """The run stopped on SIGTERM / Ctrl-C after saving; re-run the same command to resume.

  Its message is the one line the program prints (exit status `EXIT_PREEMPTED`)."""


def install_early(line: str) -> None:
  """From the start of a program's `main` until its `Preemption` takes over: SIGTERM and
  Ctrl-C print `line` and end the process with status 3 (nothing has run that could be
  saved). Before `main` runs, while Python imports jax, a signal still ends the process
  the default way (a shell reports 143 / 130). `jax.distributed.initialize` later puts its
  own SIGTERM handler in place, which is what a multi-process run needs."""
  if threading.current_thread() is not threading.main_thread():
    return

  def handler(signum, frame):  # pylint: disable=unused-argument
    try:
      sys.stdout.flush()
      print(line, file=sys.stderr, flush=True)
    finally:
      os._exit(EXIT_PREEMPTED)  # pylint: disable=protected-access
  signal.signal(signal.SIGTERM, handler)
  signal.signal(signal.SIGINT, handler)


class Preemption:
  """Catches SIGTERM and a first SIGINT while the `with` block runs (module docstring).

  command_line: a second Ctrl-C restores the default SIGINT action, which ends the
  process at once, and a stop inside `immediate` ends the process (module docstring);
  False (notebooks, where killing the kernel would lose more than the run): a second
  Ctrl-C raises KeyboardInterrupt and `immediate` raises PreemptedError.
  Outside the main thread signals cannot be caught: the object then never asks to stop.
  """

  def __init__(self, *, command_line: bool = False):
    self.command_line = command_line
    self.cleanups: list[Callable[[], None]] = []   # run before an immediate exit
    self.requested: str | None = None    # the first signal this process received
    self.multi = False
    self.active = False
    self._old: dict[int, object] = {}
    self._immediate: str | Callable[[], str] | None = None
    self._base: int | None = None
    self._units = 0

  # -- installing
  def __enter__(self) -> "Preemption":
    if threading.current_thread() is not threading.main_thread():
      return self
    self.multi = jax.process_count() > 1
    self.active = True
    self._old[signal.SIGINT] = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, self._on_signal)
    if not self.multi:   # several processes: JAX's own SIGTERM notifier stays in place
      self._old[signal.SIGTERM] = signal.getsignal(signal.SIGTERM)
      signal.signal(signal.SIGTERM, self._on_signal)
    return self

  def __exit__(self, *exc) -> None:
    for signum, old in self._old.items():
      signal.signal(signum, old if old is not None else signal.SIG_DFL)
    self._old.clear()
    self.active = False
    self._immediate = None

  def _on_signal(self, signum, frame) -> None:  # pylint: disable=unused-argument
    if signum == signal.SIGINT:
      if self.command_line:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
      else:
        signal.signal(signal.SIGINT, signal.default_int_handler)
      if self.multi:
        # JAX's notifier listens for SIGTERM: let it start the sync protocol.
        os.kill(os.getpid(), signal.SIGTERM)
    if self.requested is None:
      self.requested = signal.Signals(signum).name
    if self._immediate is not None and not self.multi:
      message = self._message(self._immediate)
      if self.command_line:
        self._exit_now(message)
      raise self.error(message)

  def _exit_now(self, message: str) -> None:
    """The command line's immediate stop: the line, the cleanups, `os._exit(3)`."""
    try:
      sys.stdout.flush()
      print(message, file=sys.stderr, flush=True)
      for fn in reversed(self.cleanups):
        try:
          fn()
        except Exception:  # pylint: disable=broad-except  (exiting anyway)
          pass
    finally:
      os._exit(EXIT_PREEMPTED)  # pylint: disable=protected-access

  # -- asking
  def should_stop(self, step: int) -> bool:
    """Whether to stop after `step` (call it at every step, with consecutive values).
    The same answer on every process."""
    if not self.active:
      return False
    if not self.multi:
      return self.requested is not None
    if self._base is None:
      self._base = step
    try:
      return multihost_utils.reached_preemption_sync_point(step - self._base + 1)
    except RuntimeError:   # jax_enable_preemption_service is off: no agreed stop
      return False

  def between(self, line: str | Callable[[], str]) -> None:
    """Between units of work that each leave a result file (continual, nas): raises
    `PreemptedError(line)` when a stop was asked for. Every process must call it at the
    same points (it counts the calls as step ids)."""
    self._units += 1
    if self.should_stop(self._units):
      raise self.error(self._message(line))

  @contextlib.contextmanager
  def immediate(self, message: str | Callable[[], str]) -> Iterator[None]:
    """Inside the block a signal (or one already received) raises `PreemptedError(message)`
    at once: for work with nothing to save half way (loading data, an evaluation, writing
    outputs that a re-run writes again). One process only; see the module docstring."""
    if self.active and not self.multi and self.requested is not None:
      raise self.error(self._message(message))
    previous, self._immediate = self._immediate, message
    try:
      yield
    finally:
      self._immediate = previous

  @staticmethod
  def _message(message) -> str:
    return message() if callable(message) else message

  def error(self, message: str) -> PreemptedError:
    """The error to raise once the work is saved (`message`: the one line to print)."""
    return PreemptedError(message)
