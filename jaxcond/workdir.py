"""One run per workdir, and a workdir that every process of a run shares.

Lock. A run writes `DIR/lock.json` (host, pid, start time, the boot id of the host and
the process's start tick, the command) before it reads any data, and removes it when it
ends, however it ends short of SIGKILL. A second run on the same workdir stops with one
line naming the holder. A lock whose run is gone (same host, and the pid is not alive, or
is alive but is another process, or the host rebooted since) is taken over with a
warning; a lock held from another host cannot be checked from here, so it is refused,
and the line says which file to delete if that run is gone.

Locally the lock file appears atomically with its content (`os.link` of a finished
temporary file, which fails if the lock exists; `O_CREAT | O_EXCL` where links are not
supported). On a bucket (`gs://`) there is no such primitive through `epath`: the lock is
written only if absent and read back, which leaves a window of a few milliseconds in
which two runs started together may both take it. Start one run per workdir there.

Shared workdir. On a TPU pod slice or a multi-node cluster every host writes its own
checkpoint shards into the workdir, so all processes must see the same storage. At start
process 0 writes a random marker that every process reads back; a process that cannot
(a local folder per host) stops the run, on every process, before any work.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import time
import uuid
from typing import Callable, TypeVar

import jax
import numpy as np

from jaxcond import files, parallel, preemption
from jaxcond.errors import ConfigError, JaxcondError

T = TypeVar("T")

LOCK = "lock.json"
MARKER = ".jaxcond-shared-check"


# ----------------------------------------------------------------------------- lock

def _boot_id() -> str:
  try:
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
      return f.read().strip()
  except OSError:
    return ""


def _pid_start(pid: int) -> str:
  """The start tick of process `pid` (Linux; "" elsewhere): tells a reused pid apart."""
  try:
    with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as f:
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError, ValueError):
    return ""


def current_command() -> str:
  """This process's command line as typed (`python -m jaxcond.condense ...`)."""
  argv = [str(a) for a in sys.argv]
  marker = f"{os.sep}jaxcond{os.sep}"
  if argv and argv[0].endswith(".py") and marker in argv[0]:
    module = argv[0][argv[0].rindex(marker) + 1:-3].replace(os.sep, ".")
    argv[0] = "python -m " + module.removesuffix(".__main__")
  return " ".join(argv)


def holder_record(command: str = "") -> dict:
  """What a lock file holds: who runs, since when, and how to tell it is still alive."""
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec="seconds"),
          "boot_id": _boot_id(), "pid_start": _pid_start(os.getpid()),
          "command": command}


def is_alive(rec: dict) -> bool | None:
  """Whether the run of lock record `rec` still runs: True / False on this host, None for
  another host (nothing here can tell)."""
  if rec.get("host") != socket.gethostname():
    return None
  boot = _boot_id()
  if rec.get("boot_id") and boot and rec["boot_id"] != boot:
    return False                       # the host restarted since
  pid = rec.get("pid")
  if not isinstance(pid, int) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass                               # alive, another user's
  start = _pid_start(pid)
  if rec.get("pid_start") and start and rec["pid_start"] != start:
    return False                       # the pid was reused by another process
  return True


def describe_holder(rec: dict) -> str:
  text = (f"host {rec.get('host', '?')}, pid {rec.get('pid', '?')}, started "
          f"{rec.get('started', '?')}")
  return text + (f": {rec['command']}" if rec.get("command") else "")


class Lock:
  """A held workdir lock; `release()` (or leaving the `with` block) removes it."""

  def __init__(self, path: str, record: dict):
    self.path, self.record = path, record

  def release(self) -> None:
    if self.path is None:
      return
    try:
      if _read(self.path) == self.record:
        files.remove(self.path)
    except (OSError, JaxcondError):
      pass                             # a lock left behind is taken over later
    self.path = None

  def __enter__(self) -> "Lock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _read(path: str) -> dict | None:
  """The lock record at `path`; None when it is missing, empty or unreadable."""
  try:
    rec = json.loads(files.read_text(path))
  except (OSError, ValueError):
    return None
  return rec if isinstance(rec, dict) else None


def _age(path: str) -> float | None:
  if files.is_remote(path):
    return None
  try:
    return time.time() - os.path.getmtime(path)
  except OSError:
    return None


def _create(path: str, record: dict) -> bool:
  """Writes the lock if absent (module docstring); False when it exists."""
  data = (json.dumps(record, indent=1) + "\n").encode("utf-8")
  if files.is_remote(path):
    if files.exists(path):
      return False
    files.write_bytes(path, data)
    time.sleep(0.05)
    return _read(path) == record
  tmp = f"{path}.new-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  try:
    try:
      files.write_bytes(tmp, data)
      try:
        os.link(tmp, path)
        return True
      except FileExistsError:
        return False
      except OSError as err:
        if files.storage_errno(err) is not None:
          raise
      # no hard links here (some network file systems): exclusive creation instead
      try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        return False
      with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      return True
    finally:
      try:
        os.remove(tmp)
      except OSError:
        pass
  except OSError as err:
    if files.storage_errno(err) is None:
      raise
    raise files.StorageError(f"cannot write the lock {path}: {files.describe(err)}") from None


def _take_over(path: str) -> None:
  """Removes a stale lock; of two runs taking it over at once, one wins `_create`."""
  if files.is_remote(path):
    files.remove(path)
    return
  aside = f"{path}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  try:
    os.rename(path, aside)
    os.remove(aside)
  except FileNotFoundError:
    pass


def acquire(workdir, *, name: str = "", command: str = "", warn=print) -> Lock:
  """Takes the lock of `workdir` (`DIR/lock.json`, or `DIR/lock.<name>.json` for work
  that may share a workdir, such as `nas` shards). One-line ConfigError naming the
  holder when another live run has it; `warn` gets the line of a take-over."""
  workdir = files.absolute(workdir)
  path = files.join(workdir, f"lock.{name}.json" if name else LOCK)
  files.makedirs(workdir)
  record = holder_record(command)
  t0 = time.time()
  for _ in range(100):
    if _create(path, record):
      return Lock(path, record)
    holder = _read(path)
    if holder is None:
      if not files.exists(path):
        continue
      age = _age(path)
      age = time.time() - t0 if age is None else age
      if age < 5.0:                      # being written right now: look again
        time.sleep(0.1)
        continue
      warn(f"warning: {path} is unreadable (a run killed while taking it?): taking it over")
      _take_over(path)
      continue
    alive = is_alive(holder)
    if alive:
      raise ConfigError(f"workdir: {workdir} is in use by another run ({describe_holder(holder)})"
                        f"; wait for it to end or use another --workdir")
    if alive is None:
      raise ConfigError(f"workdir: {workdir} is locked by a run on another host "
                        f"({describe_holder(holder)}); if that run is gone, delete {path}")
    warn(f"warning: {workdir} was locked by a run that is gone ({describe_holder(holder)}); "
         f"taking the lock over")
    _take_over(path)
  raise ConfigError(f"workdir: could not take the lock {path} (other runs keep taking it)")


# ----------------------------------------------------------------------------- shared

def check_shared(workdir) -> None:
  """Stops every process (one-line ConfigError) unless all of them see the workdir that
  process 0 writes to (module docstring). Nothing to check with one process."""
  if jax.process_count() == 1:
    return
  workdir = files.absolute(workdir)
  marker = files.join(workdir, MARKER)
  first = jax.process_index() == 0
  mine = np.frombuffer(os.urandom(16), np.uint8) if first else np.zeros(16, np.uint8)
  token = parallel.broadcast_from_first(mine).astype(np.uint8).tobytes()
  why = ""
  if first:
    try:
      files.makedirs(workdir)
      files.write_bytes(marker, token)
    except (OSError, JaxcondError) as err:
      why = files.describe(err) if isinstance(err, OSError) else str(err)
  parallel.sync("jaxcond_shared_marker_written")
  try:
    seen = files.read_bytes(marker) == token
  except (OSError, JaxcondError):
    seen = False
  flags = parallel.host_allgather(np.int32(seen)).reshape(-1)
  parallel.sync("jaxcond_shared_marker_read")
  if first:
    try:
      files.remove(marker)
    except (OSError, JaxcondError):
      pass
  if why or not flags[0]:
    raise files.StorageError(f"workdir: process 0 cannot write {marker}: "
                             f"{why or 'written but not read back'}")
  bad = [i for i, ok in enumerate(flags.tolist()) if not ok]
  if bad:
    who = ", ".join(str(i) for i in bad)
    raise ConfigError(
        f"workdir: {workdir} is not shared by all processes: process(es) {who} cannot "
        f"read the marker process 0 wrote there; every host writes checkpoint shards "
        f"into the workdir, so give all processes the same shared folder or a bucket "
        f"(gs://...)")


def claim(workdir, *, name: str = "", command: str = "", warn=print) -> Lock | None:
  """`check_shared`, then the lock, taken by process 0 for the whole run; every process
  stops when it cannot be taken. Returns the lock (None on other processes)."""
  check_shared(workdir)
  if jax.process_count() == 1:
    return acquire(workdir, name=name, command=command, warn=warn)
  lock, err = None, None
  if jax.process_index() == 0:
    try:
      lock = acquire(workdir, name=name, command=command, warn=warn)
    except JaxcondError as e:
      err = e
  status = int(parallel.broadcast_from_first(
      np.int32(0 if err is None else 2 if isinstance(err, ConfigError) else 1)))
  if err is not None:
    raise err
  if status == 2:
    raise ConfigError(f"workdir: {files.absolute(workdir)} is in use by another run "
                      f"(process 0 names it)")
  if status == 1:
    raise files.StorageError(f"workdir: process 0 could not take the lock of "
                             f"{files.absolute(workdir)} (its output says why)")
  return lock


def run_locked(workdir, body: Callable[[preemption.Preemption], T], *,
               stop: preemption.Preemption | None = None, starting: str = "", name: str = "",
               command: str = "", warn=print) -> T:
  """`body(stop)` with the workdir claimed (`claim`) and `stop` entered (SIGTERM / Ctrl-C
  handled): what every program that writes a workdir does around its work. A signal while
  the lock is being taken stops at once with `starting` (the program's own words); the
  lock is released however the body ends, a stop that exits at once included."""
  stop = stop or preemption.Preemption()
  starting = starting or ("preempted while starting: nothing to save; re-run the same "
                          "command to resume")
  lock = None
  try:
    with stop:
      with stop.immediate(starting):
        lock = claim(workdir, name=name, command=command or current_command(), warn=warn)
        if lock is not None:
          stop.cleanups.append(lock.release)
      return body(stop)
  finally:
    if lock is not None:
      lock.release()
