"""The one command line of every jaxcond program (condense, evaluate, bench, ...).

    python -m jaxcond.<program> --config experiments/<file>.py[:arg] --workdir DIR \\
        [--config.<field>=value ...] [program flags] [--help]

- `--config file.py[:arg]`: a Python file with `get_config(arg)` returning the full config
  (the schema of `jaxcond.configs`); the shipped ones are in `experiments/`, and their
  docstrings give the run command and the expected accuracy.
- `--config.<field>=value` overrides one field (`--config.synthetic.lr=10`,
  `--config.eval.models=convnet,resnet18`, `--config.quiet`); the value is read as the
  field's type, and an unknown field is refused with the closest known name.
- each program declares its own flags in one line each (`cli.flag(...)`), with `--a_b` and
  `--a-b` both accepted;
- `--help` prints the usage, the program's flags and these rules, and exits 0.

Errors are one line on stderr, `error: <field or file>: <what is wrong>`, never a traceback.
Exit status (the same for every program): 0 done; 2 bad command line, config or input file
(`ConfigError`, `DataError`: fix the command; also a workdir in use by another run, or
checkpoints none of which restores); 1 the run itself failed (e.g. the loss diverged, or the
storage refused a write: `files.StorageError`; other `JaxcondError`s); 3 preempted: SIGTERM
or a first Ctrl-C stopped the run after saving its work (`preemption.PreemptedError`, one
line `preempted at step N: ...` without `error:`): re-run the same command to resume. A
second Ctrl-C ends the process at once (the shell's 130); Ctrl-C outside a run's own
handling prints `interrupted` and exits 130.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Sequence

from jaxcond import configs, parallel, preemption
from jaxcond.errors import ConfigError, DataError, JaxcondError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_PREEMPTED = preemption.EXIT_PREEMPTED      # 3
EXIT_INTERRUPTED = 130                          # 128 + SIGINT, as a shell reports it
_OVERRIDE = "--config."

RULES = """\
config:
  --config FILE.py[:ARG]   experiment file with get_config(ARG); shipped ones are in
                           experiments/ (e.g. experiments/cifar10.py:method=m3d,ipc=10)
  --config.FIELD=VALUE     override one config field, e.g. --config.synthetic.lr=10
                           --config.eval.num_nets=2 --config.eval.models=convnet,resnet18;
                           unknown fields are refused (docs/condense.md lists them)

exit status: 0 done; 2 bad command line, config or input file, or a workdir in use (one
`error:` line on stderr); 1 the run failed (e.g. the loss diverged, the disk is full);
3 preempted by SIGTERM or a first Ctrl-C, work saved: re-run the same command to resume.
A second Ctrl-C ends the run at once."""


@dataclasses.dataclass(frozen=True)
class Flag:
  """A program-specific flag (argparse keywords in `kwargs`)."""
  name: str
  help: str
  kwargs: tuple = ()


def flag(name: str, help: str, **kwargs) -> Flag:  # pylint: disable=redefined-builtin
  """One line per flag: `cli.flag("plan", "print the memory plan", action="store_true")`."""
  if "action" not in kwargs and "choices" not in kwargs:
    kwargs.setdefault("metavar", "N" if kwargs.get("type") is int else "VALUE")
  return Flag(name.lstrip("-"), help, tuple(sorted(kwargs.items())))


# The flags every program that can span hosts takes (condense, evaluate, pool): one process
# per host, the same command with these (docs/condense.md "Several hosts, one workdir").
DISTRIBUTED_FLAGS = (
    flag("coordinator_address", "host:port of process 0 for a multi-process run, or auto "
         "(TPU VM slices, SLURM, ...: JAX finds it; the same command on every worker) (or "
         "env JAX_COORDINATOR_ADDRESS)"),
    flag("num_processes", "processes in a multi-process run", type=int),
    flag("process_id", "this process's index", type=int),
    flag("local_device_ids", "local device ids for this process (comma-separated)"),
)


def plan_flags(what: str) -> tuple:
  """`--plan` (from shapes only: no data read, no --workdir) and `--devices N`."""
  return (flag("plan", f"print {what} from shapes only (no data is read, no --workdir "
                       "needed) and exit; the last line is JSON", action="store_true"),
          flag("devices", "with --plan: plan for this many devices (fake CPU devices here; "
                          "0 = the devices present)", type=int, default=0))


def start_distributed(flags) -> bool:
  """`jax.distributed` from the DISTRIBUTED_FLAGS of a parsed command line (no-op with one
  process); whether this is a multi-process run."""
  ids = flags.local_device_ids
  ids = [int(i) for i in ids.split(",")] if ids else None
  return parallel.initialize_distributed(flags.coordinator_address, flags.num_processes,
                                         flags.process_id, ids)


@dataclasses.dataclass(frozen=True)
class Program:
  """What a program's command line looks like (its `--help` is built from this)."""
  name: str                           # "condense" -> python -m jaxcond.condense
  summary: str                        # one line
  examples: tuple = ()
  flags: tuple = ()
  config: str = "required"            # "required" | "optional" | "none"
  workdir: str = "required"           # "required" | "optional" | "none" | "positional"
  load: bool = True                   # build the ConfigDict here (False: the program does)
  workdir_help: str = "output folder"  # what --workdir (or WORKDIR) is
  workdir_unless: tuple = ()          # flags that make a required --workdir unnecessary

  def workdir_rule(self) -> str:
    """How `--help` describes --workdir: what the parser enforces, in words."""
    unless = ", ".join(f"--{f}" for f in self.workdir_unless)
    return f"{self.workdir_help} ({self.workdir}{f', except with {unless}' if unless else ''})"


@dataclasses.dataclass
class Args:
  """The parsed command line: `config` (ConfigDict, or None when the program builds it),
  `config_arg` (the FILE[:ARG] string), `overrides` [(field, raw value)], `workdir`,
  `flags` (argparse namespace of the program's own flags) and `command` (for records)."""
  config: Any
  config_arg: str | None
  overrides: list
  workdir: str | None
  flags: argparse.Namespace
  command: str


class _Formatter(argparse.RawDescriptionHelpFormatter):
  """A fixed width, so `--help` and docs/cli.md read the same on any terminal."""

  def __init__(self, prog):
    super().__init__(prog, width=92, max_help_position=30)


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    raise ConfigError(f"command line: {message}")


def _parser(program: Program) -> argparse.ArgumentParser:
  rules = RULES if program.config != "none" else RULES[RULES.index("exit status"):]
  p = _Parser(prog=f"python -m jaxcond.{program.name}", description=program.summary,
              epilog=rules + ("\n\nexamples:\n" + "\n".join(f"  {e}" for e in program.examples)
                              if program.examples else ""),
              formatter_class=_Formatter, allow_abbrev=False, add_help=False)
  p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
  if program.config != "none":
    p.add_argument("--config", metavar="FILE.py[:ARG]",
                   help=f"experiment config ({program.config})")
  if program.workdir == "positional":
    p.add_argument("workdir", metavar="WORKDIR", help=program.workdir_help)
  elif program.workdir != "none":
    p.add_argument("--workdir", metavar="DIR", help=program.workdir_rule())
  for f in program.flags:
    names = [f"--{f.name}"]
    alt = f.name.replace("_", "-") if "_" in f.name else f.name.replace("-", "_")
    if alt != f.name:
      names.append(f"--{alt}")
    p.add_argument(*names, help=f.help, **dict(f.kwargs))
  return p


def help_text(program: Program) -> str:
  return _parser(program).format_help()


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str | None]]]:
  """(other arguments, [(field, raw value or None for a bare boolean)]) from argv."""
  rest, overrides, i = [], [], 0
  argv = list(argv)
  while i < len(argv):
    a = argv[i]
    if a.startswith(_OVERRIDE):
      field, eq, value = a[len(_OVERRIDE):].partition("=")
      if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
        value, eq = argv[i + 1], "="
        i += 1
      overrides.append((field, value if eq else None))
    else:
      rest.append(a)
    i += 1
  return rest, overrides


def parse(program: Program, argv: Sequence[str]) -> Args | None:
  """Parses `argv` (without the program name); None when --help was asked for (printed)."""
  argv = list(argv)
  if "-h" in argv or "--help" in argv:
    print(help_text(program), end="")
    return None
  rest, overrides = split_overrides(argv)
  ns = _parser(program).parse_args(rest)
  if program.config == "none":
    ns.config = None
    if overrides:
      raise ConfigError(f"--config.{overrides[0][0]}: this program takes no config")
  if program.config == "required" and not ns.config:
    raise ConfigError("--config: required (e.g. --config experiments/quickstart.py; "
                      "--help lists the flags)")
  if overrides and not ns.config:
    raise ConfigError(f"--config.{overrides[0][0]}: given without --config")
  workdir = getattr(ns, "workdir", None)
  config = None
  if ns.config and program.load:
    config = load_config(ns.config, overrides)
  if program.workdir == "required" and not workdir and \
      not any(getattr(ns, f.replace("-", "_"), None) for f in program.workdir_unless):
    unless = "".join(f"; only --{f} runs without" for f in program.workdir_unless)
    raise ConfigError(f"--workdir: required (the {program.workdir_help}{unless})")
  own = argparse.Namespace(**{k: v for k, v in vars(ns).items()
                              if k not in ("help", "config", "workdir")})
  command = " ".join([f"python -m jaxcond.{program.name}", *argv])
  return Args(config, ns.config, overrides, workdir, own, command)


# ----------------------------------------------------------------------------- configs

def _config_module(path: str):
  if not os.path.isfile(path):
    raise ConfigError(f"--config: file {path!r} not found")
  name = "_jaxcond_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except JaxcondError:
    raise
  except Exception as err:  # pylint: disable=broad-except  (a user's file)
    raise ConfigError(f"--config {path}: {type(err).__name__}: {err}") from None
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"--config {path}: defines no get_config(arg)")
  return module


def _call(get_config, arg, spec):
  try:
    config = get_config(arg)
  except JaxcondError:
    raise
  except Exception as err:  # pylint: disable=broad-except
    raise ConfigError(f"--config {spec}: {type(err).__name__}: {err}") from None
  if config is None:
    raise ConfigError(f"--config {spec}: get_config returned None")
  return config


def parse_value(field: str, raw: str | None, want):
  """A command-line string as the type of the schema's value `want`."""
  if isinstance(want, bool):
    if raw is None:
      return True
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
      return True
    if low in ("0", "false", "no", "off"):
      return False
    raise ConfigError(f"{field}: expected true/false, got {raw!r}")
  if raw is None:
    raise ConfigError(f"{field}: needs a value (--config.{field}=VALUE)")
  if isinstance(want, int):
    try:
      return int(raw)
    except ValueError:
      raise ConfigError(f"{field}: expected an integer, got {raw!r}") from None
  if isinstance(want, float):
    try:
      return float(raw)
    except ValueError:
      raise ConfigError(f"{field}: expected a number, got {raw!r}") from None
  if isinstance(want, str):
    value = configs.literal(raw)  # 'quoted' strings
    return value if isinstance(value, str) else raw
  if isinstance(want, tuple):
    value = configs.literal(raw)
    if isinstance(value, (tuple, list)):
      return tuple(value)
    return tuple(v.strip() for v in raw.split(",") if v.strip())
  return configs.literal(raw)


def apply_overrides(config, overrides: Sequence[tuple[str, str | None]]) -> None:
  """Sets each `--config.<field>` on `config` (one-line ConfigError for unknown fields).

  The fields and their types are the loaded config's own: the condensation schema for
  condense/evaluate/bench configs, the program's for continual/nas configs."""
  known = configs.flat(config)
  for field, raw in overrides:
    if field not in known:
      raise ConfigError(f"{field}: unknown config field (from --config.{field})"
                        f"{configs.suggest(field, known)}")
    value = parse_value(field, raw, known[field])
    if isinstance(known[field], float) and isinstance(value, int) and \
        not isinstance(value, bool):
      value = float(value)
    node = config
    *parents, leaf = field.split(".")
    for p in parents:
      node = node[p]
    with node.ignore_type():
      node[leaf] = value


def load_config(spec: str, overrides: Sequence[tuple[str, str | None]] = (), *,
                arg_updates: dict | None = None):
  """`FILE.py[:ARG]` -> ConfigDict: get_config(ARG with `arg_updates` merged in), then the
  `--config.<field>` overrides; warns (one stderr line) when `--config.ipc`/`method` leave
  fields at the defaults of the arg's ipc/method."""
  path, _, arg = spec.partition(":")
  if arg_updates:
    args = {**configs.parse_arg(arg), **arg_updates}
    arg = ",".join(k if v is True else f"{k}={v}" for k, v in args.items())
  module = _config_module(path)
  config = _call(module.get_config, arg or None, spec)
  apply_overrides(config, overrides)
  _warn_stale_defaults(module.get_config, path, arg, overrides, config)
  return config


def _warn_stale_defaults(get_config, path, arg, overrides, config) -> None:
  """`--config.ipc=1` after an arg built for ipc 10 keeps ipc-10 defaults (M3D's lr): one
  stderr line naming them and the arg that would set them."""
  overridden = {f for f, _ in overrides}
  if not {"ipc", "method"} & overridden:
    return
  try:
    stale = configs.stale_defaults(get_config, arg or None, config, overridden)
  except Exception:  # pylint: disable=broad-except  (a guard only; validation reports errors)
    return
  if stale:
    fields = "; ".join(f"{k} stays {v!r} (default there: {d!r})" for k, v, d in stale[:4])
    fields += f"; and {len(stale) - 4} more" if len(stale) > 4 else ""
    which = ",".join(f"{k}={config[k]}" for k in ("method", "ipc") if k in overridden)
    print(f"warning: --config.ipc/--config.method change the config after its defaults were "
          f"set: {fields}. Put {which} in the config arg ({path}:...,{which}) to get them, "
          f"or set those fields explicitly.", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- main

def exit_code(err: BaseException) -> int:
  """2 for bad input (ConfigError, DataError), 3 preempted, 1 for a failed run (module
  docstring)."""
  if isinstance(err, preemption.PreemptedError):
    return EXIT_PREEMPTED
  return EXIT_USAGE if isinstance(err, (ConfigError, DataError)) else EXIT_FAILED


def error_line(err: BaseException) -> str:
  line = (str(err).strip().splitlines() or [type(err).__name__])[0]
  return line if isinstance(err, preemption.PreemptedError) else "error: " + line


def main(program: Program, run: Callable[[Args], Any],
         argv: Sequence[str] | None = None) -> int:
  """Parses the command line, calls `run(args)` and maps errors to one stderr line and the
  exit status. `argv` is sys.argv-style: argv[0] is the program (absl's convention)."""
  argv = list(sys.argv if argv is None else argv)[1:]
  try:
    args = parse(program, argv)
    if args is None:
      return EXIT_OK
    run(args)
  except JaxcondError as err:
    print(error_line(err), file=sys.stderr, flush=True)
    return exit_code(err)
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED
  return EXIT_OK


# ----------------------------------------------------------------------------- docs

PROGRAM_MODULES = ("condense", "evaluate", "pool", "bench", "continual", "nas", "report", "export")


def reference(programs) -> str:
  """docs/cli.md: every program's `--help`, generated from the same `Program` definitions the
  parsers are built from (tests/test_cli.py keeps the file in step with them)."""
  parts = ["# Command-line reference", "",
           "Generated from the programs' own definitions (`jaxcond.cli.reference`); every "
           "program prints the same text with `--help`. Regenerate with "
           "`python -m jaxcond.cli > docs/cli.md`.", ""]
  for program in programs:
    parts += [f"## `python -m jaxcond.{program.name}`", "", "```", help_text(program).rstrip(),
              "```", ""]
  return "\n".join(parts)


if __name__ == "__main__":   # the programs import cli, so they are looked up by name here
  print(reference([importlib.import_module(f"jaxcond.{m}").PROGRAM for m in PROGRAM_MODULES]),
        end="")
