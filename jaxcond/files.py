"""Atomic writes: a file a run leaves behind is either the old one or the new one, never
half written (a run killed mid-write must not leave a results file that a resume or a
reader then trusts). Write to a temporary name beside it, then `os.replace`."""
from __future__ import annotations

import json
import os


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
