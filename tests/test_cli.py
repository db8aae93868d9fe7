"""jaxcond.cli: every program answers --help, refuses unknown fields in one line, and maps
errors to the same exit status (in-process: the real parsers, no subprocess)."""
import pytest

from jaxcond import bench, cli, condense
from jaxcond import evaluate as ev
from jaxcond.errors import ConfigError, DataError, JaxcondError

PROGRAMS = {"condense": condense.main, "evaluate": ev.main, "bench": bench.main}
QUICK = "experiments/quickstart.py"


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_help_prints_usage_flags_and_override_rules(name, capsys):
  assert PROGRAMS[name]([name, "--help"]) == 0
  out = capsys.readouterr().out
  assert out.startswith(f"usage: python -m jaxcond.{name}")
  assert "--config.FIELD=VALUE" in out and "--config.synthetic.lr=10" in out
  assert "experiments/" in out and "exit status" in out
  own = {"condense": "--num_processes", "evaluate": "--synthetic", "bench": "--fake-data"}
  assert own[name] in out


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_unknown_field_is_one_clean_line(name, tmp_path, capsys):
  argv = [name, "--config", QUICK, "--config.eval.nmu_nets=3"]
  if name != "bench":
    argv += ["--workdir", str(tmp_path)]
  assert PROGRAMS[name](argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.splitlines() == [err]
  assert err.startswith("error: eval.nmu_nets: unknown config field")
  assert err.endswith("did you mean 'eval.num_nets'?")


def test_missing_config_and_unknown_flag(capsys):
  assert condense.main(["condense", "--workdir", "w"]) == 2
  assert capsys.readouterr().err.startswith("error: --config: required")
  assert ev.main(["evaluate", "--config", QUICK, "--workdir", "w", "--synthtic=x"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: command line:") and "--synthtic" in err
  assert condense.main(["condense", "--config", "nope.py", "--workdir", "w"]) == 2
  assert "nope.py" in capsys.readouterr().err


def test_override_values_take_the_fields_type():
  c = cli.load_config(QUICK, [("synthetic.lr", "10"), ("quiet", None), ("dataset.path", "7"),
                              ("eval.models", "convnet,resnet18"), ("steps", "12")])
  assert c.synthetic.lr == 10.0 and isinstance(c.synthetic.lr, float)
  assert c.quiet is True and c.dataset.path == "7" and c.steps == 12
  assert c.eval.models == ("convnet", "resnet18")
  with pytest.raises(ConfigError, match="^steps: expected an integer"):
    cli.load_config(QUICK, [("steps", "many")])
  with pytest.raises(ConfigError, match="^quiet: expected true/false"):
    cli.load_config(QUICK, [("quiet", "maybe")])
  c = cli.load_config(QUICK, arg_updates={"method": "m3d", "ipc": 1})
  assert (c.method, c.ipc, c.synthetic.factor) == ("m3d", 1, 2)


def test_split_overrides_both_spellings():
  rest, over = cli.split_overrides(["--config", "f.py", "--config.steps=3", "--config.seed",
                                    "4", "--config.quiet", "--workdir", "w"])
  assert rest == ["--config", "f.py", "--workdir", "w"]
  assert over == [("steps", "3"), ("seed", "4"), ("quiet", None)]


def test_exit_codes():
  class Diverged(JaxcondError):
    pass
  assert cli.exit_code(ConfigError("x")) == cli.EXIT_USAGE == 2
  assert cli.exit_code(DataError("x")) == 2
  assert cli.exit_code(Diverged("x")) == cli.EXIT_FAILED == 1
  assert cli.error_line(DataError("a.npz: truncated\nmore")) == "error: a.npz: truncated"

  def fail(args):
    raise Diverged("step 3: loss is nan")
  assert cli.main(cli.Program("t", "test", workdir="none", config="optional"), fail,
                  ["t"]) == 1


# ----------------------------------------------------------------------------- smoke tests
# One in-process end-to-end run per program on tiny digits (the real code path, tiny sizes);
# evaluate: tests/test_evaluate.py::test_smoke_evaluate_program_on_digits; bench:
# tests/test_bench.py::test_cli_last_line_is_json (in-process).

def test_smoke_condense_program_on_digits(tmp_path, capsys):
  import json
  from jaxcond import synthetic_io
  argv = ["condense", "--config", f"{QUICK}:method=dm", "--workdir", str(tmp_path),
          "--config.steps=2", "--config.checkpoint_every=0", "--config.log_every=1",
          "--config.batch_real=8", "--config.ipc=1", "--config.model.width=8",
          "--config.eval.num_nets=1", "--config.eval.epochs=1", "--config.eval.model=mlp"]
  assert condense.main(argv) == 0, capsys.readouterr().err
  out = capsys.readouterr().out
  assert "eval @ step 2: dm mlp x1" in out and "done: 2 steps" in out
  s = synthetic_io.load(tmp_path / "synthetic.npz", dataset="digits", num_classes=10)
  assert s.x.shape == (10, 8, 8, 1) and s.class_names[:2] == ("0", "1") and s.steps == 2
  (record,) = [json.loads(l) for l in (tmp_path / "eval.jsonl").read_text().splitlines()]
  assert record["step"] == 2 and record["model"] == "mlp" and record["num_nets"] == 1
  assert {"accuracies", "mean", "std", "protocol", "measured_on", "wall_s"} <= set(record)
  # the standalone program scores the written file with the same function and schema
  argv = ["evaluate", "--config", f"{QUICK}:method=dm", "--workdir", str(tmp_path / "ev"),
          "--synthetic", str(tmp_path / "synthetic.npz"), "--config.eval.num_nets=1",
          "--config.eval.epochs=1", "--config.eval.model=mlp"]
  assert ev.main(argv) == 0, capsys.readouterr().err
  results = json.loads((tmp_path / "ev" / "results.json").read_text())
  assert set(record) - {"step", "decoded"} <= set(results)
  assert results["accuracies"] == record["accuracies"]      # same set, seeds and protocol


def test_positional_workdir_programs_share_the_cli(capsys):
  """report and export take WORKDIR as a positional argument, no --config, and answer
  --help / bad flags in the shared style."""
  from jaxcond import export, report
  for mod, name in ((report, "report"), (export, "export")):
    assert mod.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"python -m jaxcond.{name}" in out and "WORKDIR" in out and "exit status" in out
    assert "--config FILE" not in out
    assert mod.main([name, "w", "--config.ipc=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


# ----------------------------------------------------------------------------- the docs

import importlib  # noqa: E402  (the docs checks below; kept apart from the smoke tests)
import pathlib  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402

from jaxcond import configs, continual, nas  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Placeholders the docs write for "a value of yours", replaced by one real value each.
PLACEHOLDERS = {"<m>": "dm", "<k>": "10", "<N>": "8", "<B>": "16",
                "method=M,ipc=K": "method=dm,ipc=10", "ipc=IPC": "ipc=10",
                "=MODEL": "=resnet18", "=$I": "=0", "<file>": "experiments/cifar10.py",
                "experiments/DS.py": "experiments/mnist.py", "CFG": "experiments/cifar10.py",
                "=LR": "=1", "$o": "0", "$i/3": "0/3", "<random run>": "rand", "[--ipc 10]": ""}


def _doc_sources():
  """(where, text) of every place a user reads a command: README, docs/, the experiment
  files, every program's module docstring and its --help examples."""
  for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
    if p.name != "cli.md":   # generated from the programs' help (checked below)
      parts = p.read_text().split("```")
      # Outside fenced blocks, an inline `code span` may wrap onto the next line.
      parts[::2] = [re.sub(r"`[^`]+`", lambda m: m.group(0).replace("\n", " "), s)
                    for s in parts[::2]]
      yield p.name, "```".join(parts)
  for p in sorted((ROOT / "experiments").glob("*.py")):   # `spans` may wrap here too
    yield p.name, re.sub(r"`[^`]+`", lambda m: m.group(0).replace("\n", " "), p.read_text())
  for m in cli.PROGRAM_MODULES:
    module = importlib.import_module(f"jaxcond.{m}")
    yield f"jaxcond.{m}", (module.__doc__ or "") + "\n" + "\n".join(module.PROGRAM.examples)


def _commands():
  """Every `python -m jaxcond.<program> ARGS` with arguments, continuation lines joined."""
  out = []
  for where, text in _doc_sources():
    text = re.sub(r"\\\n\s*", " ", text)
    for m in re.finditer(r"python -m jaxcond\.([a-z_.]+)((?: +[^\s`|;&#]+)+)", text):
      prog, args = m.group(1), m.group(2).strip()
      for k, v in PLACEHOLDERS.items():
        args = args.replace(k, v)
      args = re.sub(r"\[(--[^\]]*)\]", r"\1", args)    # [--optional flags]
      if args.count('"') % 2:                       # a command quoted for ssh: its end
        args = args[:args.rindex('"')] + args[args.rindex('"') + 1:]
      # A command names its config (bench: or a sweep); a bare `... --plan` mentions a flag.
      if ("--config" in args or "--sweep" in args or prog in ("report", "export")) and \
          not args.startswith("["):
        out.append((where, prog, args))
  return out


COMMANDS = _commands()


def _check(prog: str, argv: list[str]) -> None:
  """Parses `argv` as `prog` would and validates the config it names, without running."""
  if prog == "bench":
    bench._case_configs(bench.parse_args(argv))      # builds and validates every case
    return
  if prog == "evaluate.memory":
    return   # not on the shared command line (its own argparse; covered in test_evaluate)
  module = importlib.import_module(f"jaxcond.{prog}")
  a = cli.parse(module.PROGRAM, argv)
  if a is None or a.config is None:
    return
  if prog == "continual":
    continual.settings_from_config(a.config, 10)
    for m in a.config.methods:
      configs.validate(a.config.methods[m])
  elif prog == "nas":
    nas.settings_from_config(a.config)
  else:
    configs.validate(a.config)


def test_the_docs_hold_commands_to_check():
  """The extraction is only as good as its pattern: it finds the README's quickstart."""
  assert ("README.md", "condense", "--config experiments/quickstart.py --workdir "
          "runs/quickstart") in COMMANDS
  assert len({w for w, _, _ in COMMANDS}) >= 15 and len(COMMANDS) >= 80


@pytest.mark.parametrize("where,prog,args", COMMANDS, ids=[f"{w}:{p}:{i}" for i, (w, p, _)
                                                          in enumerate(COMMANDS)])
def test_every_documented_command_parses_and_validates(where, prog, args):
  argv = [a for a in shlex.split(args) if a != "..."]
  if "..." in args:   # an elided command: only its flags are checked
    argv = [a for a in argv if a.startswith("--") and ("=" in a or a in ("--plan",))]
    argv = ["--config", "experiments/quickstart.py", *argv, "--workdir", "w"] \
        if prog not in ("report", "export") else ["w", *argv]
  _check(prog, argv)


def test_docs_cli_md_is_the_programs_own_help():
  """docs/cli.md is generated from the Program definitions (`python -m jaxcond.cli`):
  every flag of every program is documented, in the words `--help` uses."""
  programs = [importlib.import_module(f"jaxcond.{m}").PROGRAM for m in cli.PROGRAM_MODULES]
  assert (ROOT / "docs" / "cli.md").read_text() == cli.reference(programs), \
      "regenerate: python -m jaxcond.cli > docs/cli.md"


def test_workdir_rule_is_what_the_parser_enforces(capsys):
  """condense: --workdir is required except with --plan, in the help text and the parser."""
  assert "required, except with --plan" in cli.help_text(condense.PROGRAM)
  with pytest.raises(ConfigError, match="^--workdir: required .*only --plan runs without"):
    cli.parse(condense.PROGRAM, ["--config", QUICK])
  assert cli.parse(condense.PROGRAM, ["--config", QUICK, "--plan"]).workdir is None
  assert "or a synthetic.npz" in cli.help_text(importlib.import_module("jaxcond.export").PROGRAM)
