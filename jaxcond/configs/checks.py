"""One-line field checks: each raises `ConfigError` whose message starts with the field.

The `check_*` functions take plain values and return the checked value; the domains below
(`Int`, `Float`, `Choice`, ...) bind their arguments so that a schema row
(`schema.FIELDS`) names what its field may hold once, and `configs.validate` loops over
the rows.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar

from jaxcond.data import registry
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


# ------------------------------------------------------------------------------- domains
# What a field may hold: `check(field, value)` raises the one-line error, `type` is the
# Python type a program reads the field as (and `type()` the placeholder of a field whose
# value the method sets).

@dataclasses.dataclass(frozen=True)
class Int:
  lo: int | None = None
  hi: int | None = None
  type: ClassVar[type] = int

  def check(self, field: str, value) -> Any:
    return check_int(field, value, lo=self.lo, hi=self.hi)


@dataclasses.dataclass(frozen=True)
class Float:
  lo: float | None = None
  hi: float | None = None
  lo_open: bool = False
  hi_open: bool = False
  type: ClassVar[type] = float

  def check(self, field: str, value) -> Any:
    return check_float(field, value, lo=self.lo, hi=self.hi, lo_open=self.lo_open,
                       hi_open=self.hi_open)


@dataclasses.dataclass(frozen=True)
class Bool:
  type: ClassVar[type] = bool

  def check(self, field: str, value) -> Any:
    return check_bool(field, value)


@dataclasses.dataclass(frozen=True)
class Str:
  type: ClassVar[type] = str

  def check(self, field: str, value) -> Any:
    return check_str(field, value)


@dataclasses.dataclass(frozen=True)
class Choice:
  """One of `choices`, case-insensitive (programs read it lower-cased)."""
  choices: tuple
  type: ClassVar[type] = str

  def check(self, field: str, value) -> Any:
    return check_choice(field, value, self.choices)


@dataclasses.dataclass(frozen=True)
class Strategy:
  """A DSA strategy (`check_strategy`)."""
  type: ClassVar[type] = str

  def check(self, field: str, value) -> Any:
    return check_strategy(field, value)


@dataclasses.dataclass(frozen=True)
class ChoiceTuple:
  """A tuple (or list) of `choices` entries, e.g. model names."""
  choices: tuple
  what: str
  type: ClassVar[type] = tuple

  def check(self, field: str, value) -> Any:
    if not isinstance(value, (tuple, list)):
      raise ConfigError(f"{field}: expected a tuple of {self.what}, got {value!r}")
    return tuple(check_choice(field, v, self.choices) for v in value)


@dataclasses.dataclass(frozen=True)
class IntTuple:
  """A tuple (or list) of integers >= `lo`, e.g. learning-rate milestones in epochs."""
  lo: int = 0
  what: str = "integers"
  type: ClassVar[type] = tuple

  def check(self, field: str, value) -> Any:
    if not isinstance(value, (tuple, list)):
      raise ConfigError(f"{field}: expected a tuple of {self.what}, got {value!r}")
    return tuple(check_int(field, v, lo=self.lo) for v in value)


@dataclasses.dataclass(frozen=True)
class DatasetName:
  """A `data.registry` name or alias."""
  type: ClassVar[type] = str

  def check(self, field: str, value) -> Any:
    check_str(field, value, "a dataset name")
    try:
      return registry.canonical_name(value)
    except ConfigError:
      raise ConfigError(f"{field}: unknown dataset {value!r} (known: "
                        f"{', '.join(registry.DATASET_NAMES)})"
                        f"{suggest(value.lower(), registry.DATASET_NAMES)}") from None
