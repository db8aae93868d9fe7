"""One-line field checks: each raises `ConfigError` whose message starts with the field.

Shared by `configs.validate` (the whole schema) and `configs.methods` (a method name);
plain values in, the checked value out, no package imports.
"""
from __future__ import annotations

import difflib

from jaxcond.errors import ConfigError

AUG_OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")   # DSA ops (augment.py)


def suggest(name: str, choices) -> str:
  """"; did you mean 'x'?" for the closest of `choices`, else ""."""
  close = difflib.get_close_matches(name, list(choices), n=1)
  return f"; did you mean {close[0]!r}?" if close else ""


def check_choice(field: str, value, choices) -> str:
  """`value` lower-cased if it is one of `choices` (case-insensitive)."""
  if not isinstance(value, str) or value.lower() not in choices:
    raise ConfigError(f"{field}: unknown value {value!r} (choose from "
                      f"{', '.join(choices)}){suggest(str(value), choices)}")
  return value.lower()


def check_int(field, value, *, lo=None, hi=None) -> int:
  """An int (not a bool) in [lo, hi]."""
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigError(f"{field}: expected an integer, got {value!r}")
  if lo is not None and value < lo:
    raise ConfigError(f"{field}: must be >= {lo}, got {value}")
  if hi is not None and value > hi:
    raise ConfigError(f"{field}: must be <= {hi}, got {value}")
  return value


def check_float(field, value, *, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
  """A finite-or-inf number (not a bool, not nan) in the given (half-)open range."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ConfigError(f"{field}: expected a number, got {value!r}")
  value = float(value)
  if value != value:
    raise ConfigError(f"{field}: must be a number, got nan")
  if lo is not None and (value <= lo if lo_open else value < lo):
    raise ConfigError(f"{field}: must be {'>' if lo_open else '>='} {lo}, got {value}")
  if hi is not None and (value >= hi if hi_open else value > hi):
    raise ConfigError(f"{field}: must be {'<' if hi_open else '<='} {hi}, got {value}")
  return value


def check_bool(field, value) -> bool:
  if not isinstance(value, bool):
    raise ConfigError(f"{field}: expected True/False, got {value!r}")
  return value


def check_str(field, value, what: str = "a string") -> str:
  if not isinstance(value, str):
    raise ConfigError(f"{field}: expected {what}, got {value!r}")
  return value


def check_strategy(field: str, strategy) -> str:
  """A DSA strategy `op_op_...` of `AUG_OPS`; "" and "none" mean no augmentation."""
  if not isinstance(strategy, str):
    raise ConfigError(f"{field}: expected a string like "
                      f"'color_crop_cutout_flip_scale_rotate', got {strategy!r}")
  if strategy in ("", "none"):
    return "none"
  for op in strategy.split("_"):
    if op not in AUG_OPS:
      raise ConfigError(f"{field}: unknown augmentation {op!r} in {strategy!r} (ops: "
                        f"{', '.join(AUG_OPS)}){suggest(op, AUG_OPS)}")
  return strategy
