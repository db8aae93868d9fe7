"""jaxcond's floors (docs/design.md "Layers"): the import graph, built from the source.

Every `import` of a jaxcond module counts, at module level and inside functions alike.
The graph must have no cycle, no module may import one on a higher floor, programs import
only the programs that are shared entry points, and a function-level import is allowed
only for an optional or heavy third-party package or for an entry of `LOCAL_IMPORTS`.
"""
import ast
import collections
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "jaxcond"

# Each floor imports only from its own floor and those below it (first = lowest).
FLOORS = {
    "library": ("errors", "files", "rng", "backend", "progress", "mmd", "augment", "nets",
                "objectives", "synthetic", "synthetic_io", "parallel", "data", "checkpoint",
                "grids", "benchlib", "baselines", "tblog", "preemption", "workdir",
                "pool_files"),
    "step": ("configs", "steps", "plan", "realdata"),
    "programs": ("cli", "report", "export", "evaluate", "condense", "bench", "continual",
                 "nas", "pool"),
}
# The programs that other programs build on: the command line, the report, evaluation
# ("train these nets") and condensation ("condense these classes"). Others never import
# each other.
SHARED_PROGRAMS = ("cli", "report", "evaluate", "condense")

# Third-party packages that may be imported inside a function, and why.
LAZY_THIRD_PARTY = {
    "tensorflow_datasets": "optional extra [tfds]",
    "array_record": "optional extra [tfds]",
    "grain": "optional extra [tfds] (the streaming path)",
    "orbax": "heavy (tensorstore); only checkpointing needs it",
    "matplotlib": "optional extra [extras] (plots)",
    "scipy": "optional extra [extras] (SVHN .mat files)",
    "sklearn": "heavy; only the digits dataset needs it",
    "PIL": "Pillow: image files only (grids, JPEG decoding, exports)",
    "tensorboardX": "optional extra [tensorboard]",
    "tensorboard": "optional extra [tensorboard]",
}
# jaxcond modules imported inside a function: (importing module, imported module) -> why.
LOCAL_IMPORTS = {
    ("jaxcond", "jaxcond.synthetic_io"): "`import jaxcond` stays light: jaxcond.load() "
                                         "imports the file format only when called",
}


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for p in PKG.rglob("*.py"):
    parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = p
  return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
  """The jaxcond module a dotted import name lands in (a package or a module)."""
  while name and name not in MODULES:
    name = name.rpartition(".")[0]
  return name or None


def _imports(path: pathlib.Path, module: str):
  """(imported jaxcond module, line, inside a function?) and (third-party top name, line)
  for every import statement of a file."""
  tree = ast.parse(path.read_text(encoding="utf-8"))
  local_nodes = {id(n) for fn in ast.walk(tree)
                 if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(fn)}
  own, third = [], []
  for node in ast.walk(tree):
    inside = id(node) in local_nodes
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:   # relative: resolve against the package
        base = module.split(".")[:len(module.split(".")) - node.level + (path.name == "__init__.py")]
        mod = ".".join(base + ([node.module] if node.module else []))
      else:
        mod = node.module or ""
      names = ([f"{mod}.{a.name}" for a in node.names] if mod.startswith("jaxcond")
               else [mod])
    else:
      continue
    for n in names:
      if n == "jaxcond" or n.startswith("jaxcond."):
        target = _resolve(n)
        if target and target != module:
          own.append((target, node.lineno, inside))
      elif inside:
        third.append((n.split(".")[0], node.lineno))
  return own, third


GRAPH = {m: _imports(p, m) for m, p in MODULES.items()}


def _top(module: str) -> str:
  """`jaxcond.data.bank` -> `data`; `jaxcond` -> `jaxcond`."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else parts[0]


def _floor(module: str) -> int | None:
  for i, names in enumerate(FLOORS.values()):
    if _top(module) in names:
      return i
  return None


def test_every_module_has_a_floor():
  missing = sorted(m for m in MODULES if m != "jaxcond" and _floor(m) is None)
  assert not missing, f"put these modules on a floor (tests/test_layers.py FLOORS): {missing}"


def test_no_import_goes_up_a_floor_or_across_programs():
  bad = []
  for m, (own, _) in GRAPH.items():
    if m == "jaxcond":
      continue
    for target, line, _ in own:
      if target == "jaxcond":      # the root (__version__): it imports nothing at load
        continue
      if _floor(target) > _floor(m):
        bad.append(f"{m}:{line} -> {target} (up a floor)")
      programs = list(FLOORS).index("programs")
      if (_floor(m) == programs == _floor(target) and _top(m) != _top(target)
          and _top(target) not in SHARED_PROGRAMS):
        bad.append(f"{m}:{line} -> {target} (programs import only {SHARED_PROGRAMS})")
  assert not bad, "\n".join(bad)


def test_the_package_root_imports_nothing_when_loaded():
  """`import jaxcond` is free, so any module may read `jaxcond.__version__`."""
  assert not [t for t, _, inside in GRAPH["jaxcond"][0] if not inside]


def test_the_import_graph_has_no_cycle():
  edges = collections.defaultdict(set)
  for m, (own, _) in GRAPH.items():
    for target, _, _ in own:
      # A package's own __init__ importing its submodules is not a dependency cycle.
      if not target.startswith(m + "."):
        edges[m].add(target)
  state, stack, cycles = {}, [], []

  def visit(m):
    state[m] = 1
    stack.append(m)
    for t in sorted(edges[m]):
      if state.get(t) == 1:
        cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
      elif t not in state:
        visit(t)
    stack.pop()
    state[m] = 2

  for m in sorted(MODULES):
    if m not in state:
      visit(m)
  assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_imports_are_at_the_top():
  bad = []
  for m, (own, third) in GRAPH.items():
    for target, line, inside in own:
      if inside and (m, target) not in LOCAL_IMPORTS:
        bad.append(f"{m}:{line} imports {target} inside a function")
    for name, line in third:
      if name not in LAZY_THIRD_PARTY:
        bad.append(f"{m}:{line} imports {name} inside a function (not an optional or "
                   f"heavy package: move it to the top)")
  assert not bad, "\n".join(bad)


@pytest.mark.parametrize("pair", sorted(LOCAL_IMPORTS))
def test_each_allowed_local_import_is_still_there(pair):
  """An allow-list entry whose import is gone must be deleted, not kept as a loophole."""
  m, target = pair
  assert any(t == target and inside for t, _, inside in GRAPH[m][0]), pair


def test_the_graph_sees_function_level_imports():
  """The checks above are only as good as the parser: it finds the known local import."""
  own, _ = GRAPH["jaxcond"]
  assert ("jaxcond.synthetic_io", True) in {(t, inside) for t, _, inside in own}


MAX_FUNCTION_LINES = 100


def test_no_function_is_over_100_lines():
  """A function a newcomer reads top to bottom fits on two screens; a long one is split
  into named parts (declarative tables are data: `configs.schema.FIELDS` is a tuple)."""
  long = []
  for m, p in MODULES.items():
    for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        n = node.end_lineno - node.lineno + 1
        if n > MAX_FUNCTION_LINES:
          long.append(f"{m}:{node.lineno} {node.name} is {n} lines")
  assert not long, "\n".join(long)
