"""Config parsing, per-method defaults, experiment files and one-line validation errors."""
import importlib.util
import pathlib

import pytest

from jaxcond import configs
from jaxcond.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Condensation experiment files; continual.py and nas.py configure other programs (their own
# schema) and are tested in tests/test_continual.py and tests/test_nas.py.
PROGRAM_CONFIGS = ("continual", "nas")
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").glob("*.py")
                     if p.stem not in PROGRAM_CONFIGS)


def load_experiment(name):
  spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def one_line_error(fn, *args, **kwargs) -> str:
  with pytest.raises(ConfigError) as err:
    fn(*args, **kwargs)
  msg = str(err.value)
  assert "\n" not in msg, msg
  return msg


def test_parse_arg():
  assert configs.parse_arg("method=m3d,ipc=10,runlocal") == {
      "method": "m3d", "ipc": 10, "runlocal": True}
  assert configs.parse_arg("synthetic.lr=1e-2,eval.models=('convnet','mlp')") == {
      "synthetic.lr": 0.01, "eval.models": ("convnet", "mlp")}
  assert configs.parse_arg(None) == {} and configs.parse_arg("") == {}
  value, rest = configs.pop_arg("subset=imagewoof,method=dm,runlocal", "subset")
  assert value == "imagewoof" and configs.parse_arg(rest) == {"method": "dm", "runlocal": True}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
@pytest.mark.parametrize("method", ["dm", "m3d", "ddm"])
def test_experiment_configs_validate(path, method):
  module = load_experiment(path.stem)
  assert "python -m jaxcond.condense --config experiments/" in module.__doc__
  c = module.get_config(f"method={method},ipc=10")
  configs.validate(c)
  assert (c.method, c.ipc) == (method, 10)
  for field in ("method", "ipc", "steps", "seed", "checkpoint_every"):
    assert field in c
  small = module.get_config(f"method={method},ipc=1,runlocal")
  configs.validate(small)
  assert small.steps <= 20 and small.batch_real <= 16 < c.batch_real


def test_method_defaults_follow_the_papers():
  dm = configs.make_config("cifar10", "method=dm,ipc=10")
  assert (dm.synthetic.lr, dm.synthetic.momentum, dm.synthetic.init) == (1.0, 0.5, "real")
  assert (dm.batch_real, dm.steps, dm.augment.policy) == (256, 20000, "dm")
  assert dm.augment.strategy == "color_crop_cutout_flip_scale_rotate"
  assert configs.make_config("cifar10", "ipc=100").synthetic.lr == 10.0
  assert "flip" not in configs.make_config("mnist", "").augment.strategy
  assert "flip" not in configs.make_config("svhn", "").augment.strategy
  m3d = configs.make_config("cifar10", "method=m3d")
  assert (m3d.synthetic.space, m3d.synthetic.factor, m3d.synthetic.init) == ("unit", 2, "mix")
  assert (m3d.augment.policy, m3d.augment.strategy) == ("idc", "color_crop_cutout")
  assert (m3d.m3d.kernel, m3d.m3d.ipm, m3d.m3d.step_mode) == ("gaussian", 5, "per_class")
  assert (m3d.batch_real, m3d.synthetic.batch_syn_max, m3d.eval.protocol) == (128, 200, "idc")
  # M3D lr (a choice, docs/results.md): 10 from IPC 10 on, IPC-scaled below (1 at IPC 1).
  assert m3d.synthetic.lr == 10.0
  assert [configs.make_config("fashion_mnist", f"method=m3d,ipc={n}").synthetic.lr
          for n in (1, 2, 5, 10, 50)] == [1.0, 2.0, 5.0, 10.0, 10.0]
  assert configs.make_config("mnist", "method=m3d,ipc=1,synthetic.lr=10").synthetic.lr == 10.0
  ddm = configs.make_config("cifar10", "method=ddm,ipc=10")
  assert (ddm.ddm.mm_weight, ddm.ddm.icd_weight, ddm.ddm.cm_weight) == (1e4, 10.0, 0.0)
  assert configs.make_config("cifar10", "method=ddm,ipc=1").ddm.icd_weight == 0.0
  tiny = load_experiment("tinyimagenet")
  assert tiny.get_config("method=ddm").model.name == "convnetd4"
  sub = load_experiment("imagenet_subsets").get_config("subset=imagewoof,method=m3d")
  assert sub.dataset.name == "imagewoof" and sub.model.name == "convnetd5"


def test_arg_field_override_and_unknown_arg():
  c = configs.make_config("cifar10", "method=m3d,synthetic.lr=3,m3d.step_mode=joint")
  assert c.synthetic.lr == 3.0 and isinstance(c.synthetic.lr, float)
  assert c.m3d.step_mode == "joint"
  msg = one_line_error(configs.make_config, "cifar10", "synthetic.lrr=3")
  assert msg.startswith("synthetic.lrr") and "synthetic.lr" in msg


@pytest.mark.parametrize("field,value,expect", [
    ("ipc", -1, "ipc"),
    ("ipc", 0, "ipc"),
    ("method", "dn", "method"),
    ("steps", -5, "steps"),
    ("synthetic.lr", 0.0, "synthetic.lr"),
    ("synthetic.momentum", 1.5, "synthetic.momentum"),
    ("synthetic.space", "pixels", "synthetic.space"),
    ("synthetic.factor", 0, "synthetic.factor"),
    ("augment.strategy", "color_crop_zoom", "augment.strategy"),
    ("m3d.kernel", "laplace", "m3d.kernel"),
    ("model.name", "convnett", "model.name"),
    ("dataset.name", "cifar11", "dataset.name"),
    ("batch_real", 0, "batch_real"),
    ("eval.protocol", "best", "eval.protocol"),
    ("real_chunk", -2, "real_chunk"),
    ("real_chunk", 100, "real_chunk"),     # does not divide batch_real 256
    ("syn_chunk", -3, "syn_chunk"),
    ("dataset.holdout", -1, "dataset.holdout"),
    ("dataset.holdout", 1.5, "dataset.holdout"),
])
def test_invalid_fields_name_the_field(field, value, expect):
  c = configs.make_config("cifar10", "")
  with c.ignore_type():
    node, leaf = c, field
    if "." in field:
      head, leaf = field.split(".")
      node = c[head]
    node[leaf] = value
  msg = one_line_error(configs.validate, c)
  assert msg.startswith(expect), msg


def test_holdout_refuses_streaming():
  c = configs.make_config("cifar10", "dataset.holdout=1000,dataset.streaming=True")
  msg = one_line_error(configs.validate, c)
  assert msg.startswith("dataset.holdout: not supported with dataset.streaming=True"), msg
  configs.validate(configs.make_config("cifar10", "dataset.holdout=1000"))


def test_method_typo_suggests():
  msg = one_line_error(configs.make_config, "cifar10", "method=m3dd")
  assert msg.startswith("method") and "m3d" in msg


def test_unknown_field_in_configdict():
  c = configs.make_config("cifar10", "")
  c.unlock()
  c.synthetic.lrate = 1.0
  msg = one_line_error(configs.validate, c)
  assert msg.startswith("synthetic.lrate") and "unknown" in msg


def test_factor_that_does_not_fit():
  c = configs.make_config("digits", "method=m3d")
  c.synthetic.factor = 8          # 8x8 images: cells of 1 pixel (2x2 is the minimum)
  msg = one_line_error(configs.validate_shapes, c, (8, 8, 1))
  assert msg.startswith("synthetic.factor")
  c.synthetic.factor = 3          # ceil(8/3)=3-pixel cells, padded with 0.5: allowed
  configs.validate_shapes(c, (8, 8, 1))


def test_counts_checks():
  c = configs.make_config("digits", "ipc=10,batch_real=64")
  configs.validate_counts(c, [100] * 10)
  c.ipc = 150
  assert one_line_error(configs.validate_counts, c, [200] * 9 + [140]).startswith("ipc")
  c.ipc = 10
  c.batch_real = 150
  assert one_line_error(configs.validate_counts, c, [200] * 9 + [140]).startswith("batch_real")
  m = configs.make_config("digits", "method=m3d,ipc=40,batch_real=16")   # mix needs 40*4
  assert one_line_error(configs.validate_counts, m, [150] * 10).startswith("ipc")


def test_ddm_icd_needs_two_images():
  c = configs.make_config("cifar10", "method=ddm,ipc=1")
  c.ddm.icd_weight = 10.0
  assert one_line_error(configs.validate, c).startswith("ddm.icd_weight")


def test_trajectory_hash_ignores_bookkeeping_fields():
  a = configs.make_config("cifar10", "")
  b = configs.make_config("cifar10", "steps=10,log_every=1,num_devices=1,eval.num_nets=0,"
                                     "real_chunk=0,syn_chunk=0")
  assert configs.config_hash(a) == configs.config_hash(b)
  c = configs.make_config("cifar10", "seed=1")
  assert configs.config_hash(a) != configs.config_hash(c)
  assert configs.differing_fields(configs.trajectory_dict(a),
                                  configs.trajectory_dict(c)) == ["seed"]


def test_step_settings_are_plain():
  from jaxcond.data import registry
  c = configs.make_config("cifar10", "method=m3d,ipc=10")
  s = configs.step_settings(c, registry.get_info("cifar10"))
  assert hash(s) is not None
  assert (s.method, s.factor, s.step_mode, s.ipm, s.syn_per_class) == ("m3d", 2, "per_class",
                                                                       5, 40)


def test_eval_protocol_defaults_have_one_home():
  """The idc batch (64) and every other protocol default come from one table, and the
  config's eval block and EvalSettings.for_protocol agree on it."""
  from jaxcond import evaluate
  for protocol, method in (("dm", "dm"), ("idc", "m3d")):
    table = configs.eval_protocol_defaults(protocol, "cifar10")
    c = configs.make_config("cifar10", f"method={method}")
    ev = evaluate.EvalSettings.for_protocol(protocol, dataset="cifar10")
    for k, v in table.items():
      assert getattr(ev, k) == v, (protocol, k)
      if not (protocol == "dm" and k == "eval_every_epochs"):
        assert c.eval[k] == v, (protocol, k)
  assert configs.eval_protocol_defaults("idc")["batch_size"] == 64
  assert "flip" not in configs.eval_protocol_defaults("dm", "mnist")["strategy"]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_docstring_shows_its_values(path):
  """Each experiment file quotes `configs.values_table` of its own configs; when a default
  changes, paste the table printed here into the file's docstring."""
  import textwrap
  module = load_experiment(path.stem)
  table = textwrap.indent(configs.values_table(module.get_config), "  ")
  assert table in module.__doc__, f"{path.name}: the docstring's values table is stale:\n{table}"
  assert "if arg.pop(\"runlocal\", False):" in path.read_text()   # the shrink is in the file


def test_schema_takes_method_values_from_methods():
  """The schema holds no copy of a method default: its method-owned fields are DM's."""
  flat = configs.flat(configs.base_config())
  for field, value in configs.method_defaults("dm", "cifar10", 10).items():
    assert flat[field] == value and type(flat[field]) is type(value), field
  for field in configs.M3D:
    if field.startswith("m3d."):
      assert flat[field] == configs.M3D[field], field
  for field in configs.DDM:
    if field.startswith("ddm."):
      assert flat[field] == configs.DDM[field], field


def test_validate_one_entry_point():
  c = configs.make_config("digits", "method=m3d,ipc=40,batch_real=16")
  configs.validate(c)                                    # static only
  configs.validate(c, image_shape=(8, 8, 1))
  msg = one_line_error(configs.validate, c, image_shape=(8, 8, 1), counts=[150] * 10)
  assert msg.startswith("ipc")                           # mix needs 40 * 2² real images
  c.synthetic.factor = 8
  assert one_line_error(configs.validate, c, image_shape=(8, 8, 1)).startswith(
      "synthetic.factor")


def test_method_config_and_override_match_make_config():
  c = configs.method_config("cifar10", method="m3d", ipc=1)
  configs.override(c, {"steps": 7, "synthetic.lr": 3})
  assert configs.flat(c) == configs.flat(
      configs.make_config("cifar10", "method=m3d,ipc=1,steps=7,synthetic.lr=3"))
  assert one_line_error(configs.method_config, "cifar10", ipc="ten").startswith("ipc")
  assert one_line_error(configs.override, c, {"stepz": 1}).startswith("stepz")


def test_run_and_data_settings_are_plain():
  c = configs.make_config("cifar10", "method=dm,ipc=10,dataset.holdout=100,eval.every=50")
  run = configs.RunSettings.from_config(c)
  data = configs.DataSettings.from_config(c)
  assert hash(run) is not None and hash(data) is not None
  assert (run.steps, run.eval_every, run.config_hash) == (20000, 50, configs.config_hash(c))
  assert dict(run.trajectory) == configs.trajectory_dict(c)
  assert (data.name, data.holdout, data.streaming) == ("cifar10", 100, False)
