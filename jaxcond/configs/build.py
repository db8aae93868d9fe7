"""Building a config from an experiment file's arg string, and showing what it holds.

Arg strings are big_vision style: comma-separated `key=value` pairs and bare flags,
`"method=m3d,ipc=10"`, `"method=dm,ipc=1,runlocal"`, `"synthetic.lr=10"`. An experiment
file reads them as:

  arg = configs.parse_arg(arg)
  c = configs.method_config("cifar10", method=arg.pop("method", "dm"),
                            ipc=arg.pop("ipc", 10), model="convnet")
  if arg.pop("runlocal", False):
    c.steps = 20 ...                  # its CPU smoke-run shrink, in the file
  return configs.override(c, arg)     # any dotted field, applied last
"""
from __future__ import annotations

import ast
from typing import Any, Callable, Sequence

import ml_collections

from jaxcond.configs import methods, schema
from jaxcond.errors import ConfigError


# ----------------------------------------------------------------------------- arg strings

def parse_arg(arg: str | None) -> dict[str, Any]:
  """`"method=m3d,ipc=10,runlocal"` -> {"method": "m3d", "ipc": 10, "runlocal": True}.

  Values are Python literals when they parse as one (`10`, `1e4`, `True`, `(1, 2)`),
  otherwise strings. A bare word is a flag set to True.
  """
  out: dict[str, Any] = {}
  if not arg:
    return out
  for part in _split_top_level(arg):
    part = part.strip()
    if not part:
      continue
    if "=" in part:
      key, value = part.split("=", 1)
      key = key.strip()
      if not key:
        raise ConfigError(f"config arg: empty key in {part!r}")
      out[key] = literal(value.strip())
    else:
      out[part] = True
  return out


def _split_top_level(s: str) -> list[str]:
  """Splits on commas that are not inside brackets/parentheses/quotes."""
  parts, depth, quote, cur = [], 0, None, []
  for ch in s:
    if quote:
      cur.append(ch)
      if ch == quote:
        quote = None
      continue
    if ch in "\"'":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif ch == "," and depth == 0:
      parts.append("".join(cur))
      cur = []
      continue
    cur.append(ch)
  parts.append("".join(cur))
  return parts


def literal(value: str):
  """A Python literal if `value` parses as one, else the string itself."""
  try:
    return ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return value


def pop_arg(arg: str | None, key: str, default=None) -> tuple[Any, str]:
  """(value of `key` in the arg string or `default`, the arg string without it)."""
  args = parse_arg(arg)
  value = args.pop(key, default)
  rest = ",".join(k if v is True else f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                  for k, v in args.items())
  return value, rest


# ------------------------------------------------------------------------ building configs

def method_config(dataset: str, *, method: str = "dm", ipc: int = 10,
                  model: str | dict = "convnet") -> ml_collections.ConfigDict:
  """The schema with `dataset`, `ipc` and the paper defaults of `method` (methods.py).

  `model` is the condensation (and evaluation) net, or a dict method -> net name.
  """
  c = schema.base_config()
  c.dataset.name = dataset
  if isinstance(ipc, bool) or not isinstance(ipc, int):
    raise ConfigError(f"ipc: expected an integer, got {ipc!r}")
  c.ipc = ipc
  methods.apply_method_defaults(c, method)
  name = model[c.method] if isinstance(model, dict) else model
  c.model.name = name
  c.eval.model = name
  return c


def override(c: ml_collections.ConfigDict, args: dict[str, Any], *,
             source: str = "config arg") -> ml_collections.ConfigDict:
  """Sets every `dotted.field: value` of `args` on `c` (unknown fields: ConfigError)."""
  for key, value in args.items():
    schema.set_field(c, key, value, source=source)
  return c


def stale_defaults(get_config, arg: str | None, config, overridden) -> list[tuple]:
  """Fields that still hold the defaults of another `ipc` / `method`.

  `--config.ipc=1` changes ipc after `get_config(arg)` set the ipc-dependent defaults (M3D's
  lr, DM's CIFAR-10 lr at ipc >= 100, DDM's ICD weight) for the arg's ipc. Rebuilds the
  config with those values in the arg and returns (field, value, default there) for every
  field that differs and was not itself overridden.
  """
  changed = [k for k in ("ipc", "method") if k in overridden]
  if not changed:
    return []
  extra = ",".join(f"{k}={config[k]}" for k in changed)
  ref = schema.flat(get_config(f"{arg},{extra}" if arg else extra))
  now = schema.flat(config)
  return [(k, now[k], v) for k, v in ref.items()
          if k not in overridden and k in now and now[k] != v]


# ------------------------------------------------------------------ showing an experiment

TABLE_IPCS = (1, 10, 50, 100)
_NOT_READ = {"dm": ("m3d.", "ddm.", "ncfm.", "eval.eval_every_epochs"),
             "ddm": ("m3d.", "ncfm.", "eval.eval_every_epochs"), "m3d": ("ddm.", "ncfm."),
             "ncfm": ("m3d.", "ddm.", "synthetic.momentum")}


def values_table(get_config: Callable[[str], Any], prefix: str = "",
                 ipcs: Sequence[int] = TABLE_IPCS) -> str:
  """The method-owned values an experiment file's configs hold, one row per field.

  Columns dm / m3d / ddm / ncfm; a cell `a / b / c / d` gives the values at IPC 1 / 10 / 50 / 100
  where they differ; `·` = not read by that method; `= dm` / `= m3d` = as in that column.
  Experiment docstrings quote this table and tests/test_configs.py checks that they still
  match.
  """
  fields = ["model.name", "eval.model"]
  for table in (methods.DM, methods.M3D, methods.DDM, methods.NCFM):
    fields += [k for k in table if k not in fields]
  fields += [f"eval.{k}" for k in ("protocol", *methods.EVAL_PROTOCOL_DEFAULTS["dm"])]
  cols = {}
  for method in methods.METHODS:
    configs = [schema.flat(get_config(f"{prefix}method={method},ipc={n}")) for n in ipcs]
    cells = []
    for f in fields:
      values = [_show(c[f]) for c in configs]
      if f.startswith(_NOT_READ[method]):
        cells.append("·")
      elif len(set(values)) == 1:
        cells.append(values[0])
      else:
        cells.append(" / ".join(values))
    cols[method] = cells
  cols["ddm"] = ["= dm" if d == m and d != "·" else d for d, m in zip(cols["ddm"], cols["dm"])]
  cols["ncfm"] = ["= dm" if n == d and n != "·" else "= m3d" if n == m and n != "·" else n
                  for n, d, m in zip(cols["ncfm"], cols["dm"], cols["m3d"])]
  rows = [["field", *methods.METHODS]] + [[f, *(cols[m][i] for m in methods.METHODS)]
                                          for i, f in enumerate(fields)]
  widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]) - 1)]
  return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths + [0])).rstrip()
                   for r in rows)


def _show(v) -> str:
  return repr(v) if isinstance(v, str) and not v else str(v)
