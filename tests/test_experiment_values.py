"""Every experiment file keeps producing the same config values.

`experiment_values.json` holds the flattened config of every experiment file × method ×
IPC × runlocal, generated from the code at a known commit. A change to any default shows
up here as a named field. When a default changes ON PURPOSE, regenerate the fixture
deliberately and say why in the commit:

  python tests/test_experiment_values.py --regenerate

A field added to the schema later (absent from the fixture) must hold its schema default
in every experiment config; a new experiment file is not covered until regenerated.
"""
import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = pathlib.Path(__file__).with_name("experiment_values.json")
METHODS = ("dm", "m3d", "ddm", "ncfm")
IPCS = (1, 5, 10, 100)
EXTRA_ARGS = {"imagenet_subsets": ("", "subset=imagewoof,")}
PROGRAM_CONFIGS = ("continual", "nas")     # other programs' configs (their own schema)


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
  return out


def _values(experiment, name, arg):
  return _flat(experiment(f"{name}.py:{arg}").to_dict())


def _cases(names):
  for name in names:
    for pre in EXTRA_ARGS.get(name, ("",)):
      for method in METHODS:
        for ipc in IPCS:
          for runlocal in ("", ",runlocal"):
            yield name, f"{pre}method={method},ipc={ipc}{runlocal}"


def _schema():
  from jaxcond import configs  # pylint: disable=g-import-not-at-top  (script mode: sys.path)
  return _flat(configs.base_config().to_dict())


def regenerate(experiment):
  """Writes the fixture: the schema once, then each case as its difference from it."""
  schema = _schema()
  names = sorted(p.stem for p in (ROOT / "experiments").glob("*.py")
                 if p.stem not in PROGRAM_CONFIGS)
  cases = {}
  for name, arg in _cases(names):
    values = _values(experiment, name, arg)
    cases[f"{name}:{arg}"] = {k: v for k, v in values.items() if k not in schema or not _same(schema[k], v)}
  lines = ['{"schema": ' + json.dumps(schema, sort_keys=True) + ',', '"cases": {']
  lines += [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}," for k, v in cases.items()]
  lines[-1] = lines[-1].rstrip(",")
  lines.append("}}")
  FIXTURE.write_text("\n".join(lines) + "\n")


def _fixture():
  if not FIXTURE.exists():
    return {"schema": {}, "cases": {}}
  return json.loads(FIXTURE.read_text())


def _same(a, b):
  """Equal and of the same JSON type (1 is not 1.0 here: the schema coerces ints)."""
  return json.dumps(a) == json.dumps(b)


@pytest.mark.parametrize("case", sorted(_fixture()["cases"]))
def test_experiment_values_unchanged(case, experiment):
  fixture = _fixture()
  name, arg = case.split(":", 1)
  want = dict(fixture["schema"], **fixture["cases"][case])
  got = _values(experiment, name, arg)
  missing = sorted(set(want) - set(got))
  assert not missing, f"{case}: fields gone from the config: {missing}"
  changed = {k: (want[k], got[k]) for k in want if not _same(want[k], got[k])}
  assert not changed, f"{case}: (fixture, now) differ: {changed}"
  schema_now = _schema()
  new = {k: got[k] for k in set(got) - set(want) if not _same(got[k], schema_now[k])}
  assert not new, f"{case}: new fields away from their schema default: {new}"


if __name__ == "__main__":
  if sys.argv[1:] != ["--regenerate"]:
    sys.exit(__doc__)
  sys.path.insert(0, str(ROOT))
  from conftest import load_experiment  # pylint: disable=g-import-not-at-top
  regenerate(load_experiment)
  print(f"wrote {FIXTURE} ({len(_fixture()['cases'])} cases)")
