"""The path layer: every file a program writes goes through here, local or in a bucket.

Paths are strings (or `os.PathLike`): a local path, or a URL such as `gs://bucket/run`
that etils' `epath` opens (`gs://` needs `gcsfs`, the `[gcs]` extra). A multi-host run
needs a workdir that every host sees (docs/condense.md, "Several hosts"), which on a TPU
slice is usually a bucket.

Writes are atomic: what a run leaves behind is either the old file or the new one, never
half written (a run killed mid-write must not leave a results file that a resume or a
reader then trusts). Local files are written to a temporary name beside the target,
flushed to disk, then `os.replace`d; objects in a bucket are uploaded whole (an object
store replaces an object atomically). A write that fails for a reason of the storage
(full disk, quota, read-only file system, permission lost) raises `StorageError`: one
line naming the file and the cause, with the old file untouched.

Programs that resume at the granularity of their result files (`continual`, `nas`) use
`cached_json` / `cached_npz` (compute only what is not on disk yet) and
`check_same_record` (refuse to mix results made with other settings in one workdir).
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import posixpath
import re
import uuid
from typing import Any, Callable, Iterator

import numpy as np
from etils import epath

from jaxcond.errors import ConfigError, JaxcondError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")
_CAUSES = {
    errno.ENOSPC: "no space left on device (ENOSPC)",
    errno.EDQUOT: "disk quota exceeded (EDQUOT)",
    errno.EROFS: "read-only file system (EROFS)",
    errno.EACCES: "permission denied (EACCES)",
    errno.EPERM: "operation not permitted (EPERM)",
}
# How the same errors read when a library (tensorstore, gcsfs) reports them as text.
_TEXTS = (("no space left on device", errno.ENOSPC), ("disk quota exceeded", errno.EDQUOT),
          ("quota exceeded", errno.EDQUOT), ("read-only file system", errno.EROFS),
          ("permission denied", errno.EACCES), ("operation not permitted", errno.EPERM),
          ("permission_denied", errno.EACCES))


class StorageError(JaxcondError):
  """A write failed because of the storage (full disk, quota, read-only, permission)."""


# ----------------------------------------------------------------------------- errors

def storage_errno(err: BaseException) -> int | None:
  """The errno of a storage failure (ENOSPC, EDQUOT, EROFS, EACCES, EPERM) in `err` or its
  causes, also when a library reports it only as text (tensorstore's `os_error_code`);
  None for anything else."""
  seen = 0
  while err is not None and seen < 8:
    code = getattr(err, "errno", None)
    if code in _CAUSES:
      return code
    text = str(err)
    m = _OS_ERROR_CODE.search(text)
    if m and int(m.group(1)) in _CAUSES:
      return int(m.group(1))
    low = text.lower()
    for needle, code in _TEXTS:
      if needle in low:
        return code
    err = err.__cause__ or err.__context__
    seen += 1
  return None


def describe(err: BaseException) -> str:
  """A short cause for one line: `no space left on device (ENOSPC)`, or the error's type
  and first line."""
  code = storage_errno(err)
  if code is not None:
    return _CAUSES[code]
  first = (str(err).strip().splitlines() or [""])[0]
  first = first if len(first) <= 160 else first[:157] + "..."
  return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _storage_error(path, err: BaseException, what: str = "write") -> StorageError:
  return StorageError(f"cannot {what} {path}: {describe(err)}")


# ----------------------------------------------------------------------------- paths

def is_remote(p) -> bool:
  """True for a URL (`gs://...`, `s3://...`), False for a local path."""
  return bool(_URL.match(os.fspath(p)))


def absolute(p) -> str:
  """A local path made absolute; a URL as given (without a trailing slash)."""
  p = os.fspath(p)
  return p.rstrip("/") if is_remote(p) else os.path.abspath(p)


def join(p, *names: str) -> str:
  p = os.fspath(p)
  return posixpath.join(p, *names) if is_remote(p) else os.path.join(p, *names)


def dirname(p) -> str:
  p = os.fspath(p)
  return posixpath.dirname(p) if is_remote(p) else os.path.dirname(p)


def basename(p) -> str:
  p = os.fspath(p)
  return posixpath.basename(p.rstrip("/")) if is_remote(p) else os.path.basename(p)


def path(p) -> epath.Path:
  """The `epath.Path` of `p` (what orbax and other epath users take)."""
  return epath.Path(os.fspath(p))


def exists(p) -> bool:
  return os.path.exists(p) if not is_remote(p) else path(p).exists()


def isdir(p) -> bool:
  return os.path.isdir(p) if not is_remote(p) else path(p).is_dir()


def listdir(p) -> list[str]:
  if not is_remote(p):
    return sorted(os.listdir(p))
  return sorted(q.name for q in path(p).iterdir())


def makedirs(p) -> None:
  """Creates folder `p` and its parents (StorageError when the storage refuses)."""
  try:
    if is_remote(p):
      path(p).mkdir(parents=True, exist_ok=True)
    else:
      os.makedirs(p, exist_ok=True)
  except OSError as err:
    if storage_errno(err) is None and not isinstance(err, FileExistsError):
      raise
    raise _storage_error(p, err, "create the folder") from None


def remove(p, *, missing_ok: bool = True) -> None:
  try:
    if is_remote(p):
      path(p).unlink(missing_ok=missing_ok)
    else:
      os.remove(p)
  except FileNotFoundError:
    if not missing_ok:
      raise


def move(src, dst) -> None:
  """Renames a file or folder (a folder in a bucket is copied object by object)."""
  if is_remote(src) or is_remote(dst):
    path(src).rename(path(dst))
  else:
    os.replace(src, dst)


def read_bytes(p) -> bytes:
  if is_remote(p):
    return path(p).read_bytes()
  with open(p, "rb") as f:
    return f.read()


def read_text(p) -> str:
  return read_bytes(p).decode("utf-8")


def read_json(p) -> Any:
  return json.loads(read_text(p))


# ----------------------------------------------------------------------------- writes

def _tmp_name(p: str) -> str:
  return f"{p}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _fsync_dir(d: str) -> None:
  try:
    fd = os.open(d or ".", os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_write(p) -> Iterator[io.BufferedIOBase]:
  """`with atomic_write(path) as f: f.write(...)`: a binary file that replaces `path` only
  when the block finishes; on any error (or an interrupt) the old file stays and nothing
  is left behind. Storage failures become `StorageError`."""
  p = os.fspath(p)
  if is_remote(p):
    buf = io.BytesIO()
    yield buf
    try:
      path(p).write_bytes(buf.getvalue())
    except OSError as err:
      raise _storage_error(p, err) from None
    return
  tmp = _tmp_name(p)
  try:
    with open(tmp, "wb") as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, p)
  except BaseException as err:
    try:
      os.remove(tmp)
    except OSError:
      pass
    if isinstance(err, OSError) and storage_errno(err) is not None:
      raise _storage_error(p, err) from None
    raise
  _fsync_dir(os.path.dirname(p))


def write_bytes(p, data: bytes) -> str:
  with atomic_write(p) as f:
    f.write(data)
  return os.fspath(p)


def write_text(p, text: str) -> str:
  return write_bytes(p, text.encode("utf-8"))


def write_json(p, obj, *, indent: int = 2) -> str:
  """`obj` as JSON (plain Python values; callers convert numpy first)."""
  return write_text(p, json.dumps(obj, indent=indent) + "\n")


def write_npz(p, **arrays) -> str:
  """`np.savez` of `arrays`, atomically."""
  with atomic_write(p) as f:
    np.savez(f, **arrays)
  return os.fspath(p)


def append_text(p, text: str) -> None:
  """Appends `text` (whole lines) to `p`. A failed append is undone (the file is cut back
  to its old length), so no half line is left; in a bucket the object is rewritten."""
  p = os.fspath(p)
  if is_remote(p):
    old = read_bytes(p) if exists(p) else b""
    write_bytes(p, old + text.encode("utf-8"))
    return
  size = os.path.getsize(p) if os.path.exists(p) else 0
  try:
    with open(p, "a", encoding="utf-8") as f:
      f.write(text)
      f.flush()
  except OSError as err:
    try:
      os.truncate(p, size)
    except OSError:
      pass
    if storage_errno(err) is None:
      raise
    raise _storage_error(p, err) from None


# ----------------------------------------------------------------------------- results

def cached_json(p, compute: Callable[[], dict], *, indent: int = 1) -> dict:
  """The record in `p` if it exists, else `compute()` written there atomically."""
  if exists(p):
    return read_json(p)
  record = compute()
  write_json(p, record, indent=indent)
  return record


def cached_npz(p, compute: Callable[[], dict]) -> dict[str, np.ndarray]:
  """The arrays in `p` if it exists, else `compute()` (name -> array) written there
  atomically; either way read back from the file, so a resumed run sees the same values."""
  if not exists(p):
    makedirs(dirname(os.fspath(p)) or ".")
    write_npz(p, **compute())
  with np.load(io.BytesIO(read_bytes(p))) as f:
    return {k: f[k] for k in f.files}


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def check_same_record(p, record: dict) -> None:
  """Writes `record` (what a workdir's results depend on) on a fresh workdir; on resume, a
  one-line ConfigError naming the first differing field unless it is the same, so finished
  results are never mixed with others."""
  record = json.loads(json.dumps(record))       # tuples -> lists, as on disk
  if not exists(p):
    write_json(p, record, indent=1)
    return
  saved, now = _flat(read_json(p)), _flat(record)
  diff = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
  if diff:
    raise ConfigError(f"{diff[0]}: {dirname(os.fspath(p))} holds results made "
                      f"with other settings; use another --workdir")


def write_results(workdir, results: dict, table: str) -> None:
  """WORKDIR/results.json (indent 1) and WORKDIR/results.md (the Markdown table)."""
  write_json(join(workdir, "results.json"), results, indent=1)
  write_text(join(workdir, "results.md"), table)
