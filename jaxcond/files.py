"""Atomic writes, and results that are computed once: what a run leaves behind is either
the old file or the new one, never half written (a run killed mid-write must not leave a
results file that a resume or a reader then trusts). Write to a temporary name beside
it, then `os.replace`.

Programs that resume at the granularity of their result files (`continual`, `nas`) use
`cached_json` / `cached_npz` (compute only what is not on disk yet) and
`check_same_record` (refuse to mix results made with other settings in one workdir).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

import numpy as np

from jaxcond.errors import ConfigError


def write_text(path, text: str) -> str:
  path = os.fspath(path)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)
  return path


def write_json(path, obj, *, indent: int = 2) -> str:
  """`obj` as JSON (plain Python values; callers convert numpy first)."""
  return write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path) -> Any:
  with open(os.fspath(path), encoding="utf-8") as f:
    return json.load(f)


def write_npz(path, **arrays) -> str:
  """`np.savez` to a temporary name, then `os.replace`."""
  path = os.fspath(path)
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)
  return path


def cached_json(path, compute: Callable[[], dict], *, indent: int = 1) -> dict:
  """The record in `path` if it exists, else `compute()` written there atomically."""
  if os.path.exists(path):
    return read_json(path)
  record = compute()
  write_json(path, record, indent=indent)
  return record


def cached_npz(path, compute: Callable[[], dict]) -> dict[str, np.ndarray]:
  """The arrays in `path` if it exists, else `compute()` (name -> array) written there
  atomically; either way read back from the file, so a resumed run sees the same values."""
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    write_npz(path, **compute())
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def check_same_record(path, record: dict) -> None:
  """Writes `record` (what a workdir's results depend on) on a fresh workdir; on resume, a
  one-line ConfigError naming the first differing field unless it is the same, so finished
  results are never mixed with others."""
  record = json.loads(json.dumps(record))       # tuples -> lists, as on disk
  if not os.path.exists(path):
    write_json(path, record, indent=1)
    return
  saved, now = _flat(read_json(path)), _flat(record)
  diff = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
  if diff:
    raise ConfigError(f"{diff[0]}: {os.path.dirname(os.fspath(path))} holds results made "
                      f"with other settings; use another --workdir")


def write_results(workdir, results: dict, table: str) -> None:
  """WORKDIR/results.json (indent 1) and WORKDIR/results.md (the Markdown table)."""
  write_json(os.path.join(workdir, "results.json"), results, indent=1)
  write_text(os.path.join(workdir, "results.md"), table)
