"""Config parsing, the field rows, per-method defaults, experiment files, one-line
validation errors, and the fields reaching what they configure (m3d.estimator / m3d.kernel
in the M3D objective, settings for the programs)."""
import ast
import pathlib
import textwrap

import jax
import numpy as np
import pytest

from jaxcond import configs, evaluate, mmd, steps
from jaxcond.data import registry
from jaxcond.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Condensation experiment files; continual.py and nas.py configure other programs (their own
# schema) and are tested in tests/test_continual.py and tests/test_nas.py.
PROGRAM_CONFIGS = ("continual", "nas")
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").glob("*.py")
                     if p.stem not in PROGRAM_CONFIGS)




def docstring(path) -> str:
  return ast.get_docstring(ast.parse(path.read_text()), clean=False)


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
@pytest.mark.parametrize("method", ["dm", "m3d", "ddm", "ncfm"])
def test_experiment_configs_validate(path, method, experiment):
  assert "python -m jaxcond.condense --config experiments/" in docstring(path)
  c = experiment(f"{path.name}:method={method},ipc=10")
  configs.validate(c)
  assert (c.method, c.ipc) == (method, 10)
  for field in ("method", "ipc", "steps", "seed", "checkpoint_every"):
    assert field in c
  small = experiment(f"{path.name}:method={method},ipc=1,runlocal")
  configs.validate(small)
  assert small.steps <= 20 and small.batch_real <= 16 < c.batch_real


def test_method_defaults_follow_the_papers(experiment):
  dm = experiment("cifar10.py:method=dm,ipc=10")
  assert (dm.synthetic.lr, dm.synthetic.momentum, dm.synthetic.init) == (1.0, 0.5, "real")
  assert (dm.batch_real, dm.steps, dm.augment.policy) == (256, 20000, "dm")
  assert dm.augment.strategy == "color_crop_cutout_flip_scale_rotate"
  assert experiment("cifar10.py:ipc=100").synthetic.lr == 10.0
  assert "flip" not in experiment("mnist.py").augment.strategy
  assert "flip" not in experiment("svhn.py").augment.strategy
  m3d = experiment("cifar10.py:method=m3d")
  assert (m3d.synthetic.space, m3d.synthetic.factor, m3d.synthetic.init) == ("unit", 2, "mix")
  assert (m3d.augment.policy, m3d.augment.strategy) == ("idc", "color_crop_cutout")
  assert (m3d.m3d.kernel, m3d.m3d.ipm, m3d.m3d.step_mode) == ("gaussian", 5, "per_class")
  assert (m3d.batch_real, m3d.synthetic.batch_syn_max, m3d.eval.protocol) == (128, 200, "idc")
  # M3D lr (a choice, docs/results.md): 10 from IPC 10 on, IPC-scaled below (1 at IPC 1).
  assert m3d.synthetic.lr == 10.0
  assert [experiment(f"fashion_mnist.py:method=m3d,ipc={n}").synthetic.lr
          for n in (1, 2, 5, 10, 50)] == [1.0, 2.0, 5.0, 10.0, 10.0]
  assert experiment("mnist.py:method=m3d,ipc=1,synthetic.lr=10").synthetic.lr == 10.0
  ddm = experiment("cifar10.py:method=ddm,ipc=10")
  assert (ddm.ddm.mm_weight, ddm.ddm.icd_weight, ddm.ddm.cm_weight) == (1e4, 10.0, 0.0)
  assert experiment("cifar10.py:method=ddm,ipc=1").ddm.icd_weight == 0.0
  assert experiment("tinyimagenet.py:method=ddm").model.name == "convnetd4"
  sub = experiment("imagenet_subsets.py:subset=imagewoof,method=m3d")
  assert sub.dataset.name == "imagewoof" and sub.model.name == "convnetd5"


def test_arg_field_override_and_unknown_arg(experiment):
  c = experiment("cifar10.py:method=m3d,synthetic.lr=3,m3d.step_mode=joint")
  assert c.synthetic.lr == 3.0 and isinstance(c.synthetic.lr, float)
  assert c.m3d.step_mode == "joint"
  msg = one_line_error(experiment, "cifar10.py:synthetic.lrr=3")
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
def test_invalid_fields_name_the_field(field, value, expect, experiment):
  c = experiment("cifar10.py")
  with c.ignore_type():
    node, leaf = c, field
    if "." in field:
      head, leaf = field.split(".")
      node = c[head]
    node[leaf] = value
  msg = one_line_error(configs.validate, c)
  assert msg.startswith(expect), msg


def test_holdout_refuses_streaming(experiment):
  c = experiment("cifar10.py:dataset.holdout=1000,dataset.streaming=True")
  msg = one_line_error(configs.validate, c)
  assert msg.startswith("dataset.holdout: not supported with dataset.streaming=True"), msg
  configs.validate(experiment("cifar10.py:dataset.holdout=1000"))


def test_method_typo_suggests(experiment):
  msg = one_line_error(experiment, "cifar10.py:method=m3dd")
  assert msg.startswith("method") and "m3d" in msg


def test_unknown_field_in_configdict(experiment):
  c = experiment("cifar10.py")
  c.unlock()
  c.synthetic.lrate = 1.0
  msg = one_line_error(configs.validate, c)
  assert msg.startswith("synthetic.lrate") and "unknown" in msg


def test_factor_that_does_not_fit(experiment):
  c = experiment("quickstart.py:method=m3d")
  c.synthetic.factor = 8          # 8x8 images: cells of 1 pixel (2x2 is the minimum)
  msg = one_line_error(configs.validate_shapes, c, (8, 8, 1))
  assert msg.startswith("synthetic.factor")
  c.synthetic.factor = 3          # ceil(8/3)=3-pixel cells, padded with 0.5: allowed
  configs.validate_shapes(c, (8, 8, 1))


def test_counts_checks(experiment):
  c = experiment("quickstart.py:ipc=10,batch_real=64")
  configs.validate_counts(c, [100] * 10)
  c.ipc = 150
  assert one_line_error(configs.validate_counts, c, [200] * 9 + [140]).startswith("ipc")
  c.ipc = 10
  c.batch_real = 150
  assert one_line_error(configs.validate_counts, c, [200] * 9 + [140]).startswith("batch_real")
  m = experiment("quickstart.py:method=m3d,ipc=40,batch_real=16")   # mix needs 40*4
  assert one_line_error(configs.validate_counts, m, [150] * 10).startswith("ipc")


def test_ddm_icd_needs_two_images(experiment):
  c = experiment("cifar10.py:method=ddm,ipc=1")
  c.ddm.icd_weight = 10.0
  assert one_line_error(configs.validate, c).startswith("ddm.icd_weight")


def test_trajectory_hash_ignores_bookkeeping_fields(experiment):
  a = experiment("cifar10.py")
  b = experiment("cifar10.py:steps=10,log_every=1,num_devices=1,eval.num_nets=0,"
                 "real_chunk=0,syn_chunk=0")
  assert configs.config_hash(a) == configs.config_hash(b)
  c = experiment("cifar10.py:seed=1")
  assert configs.config_hash(a) != configs.config_hash(c)
  assert configs.differing_fields(configs.trajectory_dict(a),
                                  configs.trajectory_dict(c)) == ["seed"]


def test_step_settings_are_plain(experiment):
  c = experiment("cifar10.py:method=m3d,ipc=10")
  s = configs.step_settings(c, registry.get_info("cifar10"))
  assert hash(s) is not None
  assert (s.method, s.factor, s.step_mode, s.ipm, s.syn_per_class) == ("m3d", 2, "per_class",
                                                                       5, 40)


def test_eval_protocol_defaults_have_one_home(experiment):
  """The idc batch (64) and every other protocol default come from one table, and the
  config's eval block and EvalSettings.for_protocol agree on it."""
  for protocol, method in (("dm", "dm"), ("idc", "m3d")):
    table = configs.eval_protocol_defaults(protocol, "cifar10")
    c = experiment(f"cifar10.py:method={method}")
    ev = evaluate.EvalSettings.for_protocol(protocol, dataset="cifar10")
    for k, v in table.items():
      assert getattr(ev, k) == v, (protocol, k)
      if not (protocol == "dm" and k == "eval_every_epochs"):
        assert c.eval[k] == v, (protocol, k)
  assert configs.eval_protocol_defaults("idc")["batch_size"] == 64
  assert "flip" not in configs.eval_protocol_defaults("dm", "mnist")["strategy"]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_docstring_shows_its_values(path, experiment):
  """Each experiment file quotes `configs.values_table` of its own configs; when a default
  changes, paste the table printed here into the file's docstring."""
  table = textwrap.indent(configs.values_table(lambda arg: experiment(f"{path.name}:{arg}")),
                          "  ")
  assert table in docstring(path), f"{path.name}: the docstring's values table is stale:\n{table}"
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


def test_validate_one_entry_point(experiment):
  c = experiment("quickstart.py:method=m3d,ipc=40,batch_real=16")
  configs.validate(c)                                    # static only
  configs.validate(c, image_shape=(8, 8, 1))
  msg = one_line_error(configs.validate, c, image_shape=(8, 8, 1), counts=[150] * 10)
  assert msg.startswith("ipc")                           # mix needs 40 * 2² real images
  c.synthetic.factor = 8
  assert one_line_error(configs.validate, c, image_shape=(8, 8, 1)).startswith(
      "synthetic.factor")


def test_method_config_and_override_match_the_experiment_file(experiment):
  c = configs.method_config("cifar10", method="m3d", ipc=1)
  configs.override(c, {"steps": 7, "synthetic.lr": 3})
  assert configs.flat(c) == configs.flat(
      experiment("cifar10.py:method=m3d,ipc=1,steps=7,synthetic.lr=3"))
  assert one_line_error(configs.method_config, "cifar10", ipc="ten").startswith("ipc")
  assert one_line_error(configs.override, c, {"stepz": 1}).startswith("stepz")


def test_run_and_data_settings_are_plain(experiment):
  c = experiment("cifar10.py:method=dm,ipc=10,dataset.holdout=100,eval.every=50")
  run = configs.RunSettings.from_config(c)
  data = configs.DataSettings.from_config(c)
  assert hash(run) is not None and hash(data) is not None
  assert (run.steps, run.eval_every, run.config_hash) == (20000, 50, configs.config_hash(c))
  assert dict(run.trajectory) == configs.trajectory_dict(c)
  assert (data.name, data.holdout, data.streaming) == ("cifar10", 100, False)


# -------------------------------------------------------------------------- the field rows

def test_fields_are_the_schema():
  """One row per field: the rows are the ConfigDict's fields, each default valid."""
  names = [f.name for f in configs.FIELDS]
  base = configs.flat(configs.base_config())
  assert len(set(names)) == len(names) and set(base) == set(names)
  for f in configs.FIELDS:
    assert f.meaning and "\n" not in f.meaning, f.name
    value = base[f.name]
    f.check(value)                                        # every default is valid
    if f.default is not configs.METHOD:
      assert value == f.default and type(value) is type(f.default), f.name
  assert configs.NON_TRAJECTORY_FIELDS == tuple(f.name for f in configs.FIELDS
                                                if not f.trajectory)


def test_method_rows_are_the_method_tables():
  """A row marked METHOD is exactly a field some method table sets (configs.methods)."""
  owned = set()
  for method in configs.METHODS:
    owned |= set(configs.method_defaults(method, "cifar10", 10)) - {"method"}
  rows = {f.name for f in configs.FIELDS if f.default is configs.METHOD}
  assert rows == owned


# config_hash of experiment configs: a refactor must not change the identity of existing
# checkpoints. The field rows kept every hash of the hand-written schema; adding the
# trajectory field `dataset.jpeg_draft` (JPEG draft decoding changes pixels) changed them
# once, deliberately, and the trajectory fields of trained feature nets and NCFM
# (synthetic.optimizer / weight_decay / plateau_*, ncfm.*, pool.path, pool.blend,
# calib.weight) once more: these are the values with them.
KNOWN_HASHES = {
    "cifar10.py:method=dm,ipc=10": "33edaf12bebdc1ea",
    "cifar10.py:method=m3d,ipc=1": "b4f5f56c60c2f9aa",
    "cifar100.py:method=ddm,ipc=50": "d5fff4b9a9b07c39",
    "mnist.py:method=m3d,ipc=10": "4c637a91c2420266",
    "quickstart.py:method=dm,ipc=10": "84180e44c7433bca",
    "quickstart.py:method=m3d,ipc=10,runlocal": "532e7a026d46d13a",
    "imagenet1k.py:method=ddm,ipc=1": "ee3c7182f20d26ac",
    "imagenet_subsets.py:subset=imagewoof,method=m3d,ipc=50": "9c218af9b52f743e",
    "imagenet100.py:method=m3d,ipc=10": "4b9e3253cb4f1fdd",
    "tinyimagenet.py:method=dm,ipc=50": "01e249c74f9c13fc",
}
KNOWN_PROGRAM_HASHES = {
    "continual.py:cifar100": {"dm": "9279072c3b17d289", "m3d": "d9a4990ceab7b703",
                              "ddm": "4b483f0ddea8b376"},
    "continual.py:runlocal": {"dm": "d02c0c945fa5b439", "m3d": "d913e5b4145f044e",
                              "ddm": "caa3da806ee9a8d0"},
    "nas.py:cifar10": {"dm": "5b71be0454caccac"},
    "nas.py:digits": {"dm": "fcd4301c2a06b4b5"},
}


@pytest.mark.parametrize("spec", sorted(KNOWN_HASHES))
def test_config_hash_of_experiments_is_unchanged(spec, experiment):
  assert configs.config_hash(experiment(spec)) == KNOWN_HASHES[spec]


@pytest.mark.parametrize("spec", sorted(KNOWN_PROGRAM_HASHES))
def test_config_hash_of_program_methods_is_unchanged(spec, experiment):
  c = experiment(spec)
  assert {m: configs.config_hash(c.methods[m]) for m in c.methods} == \
      KNOWN_PROGRAM_HASHES[spec]


def test_model_overrides_and_data_settings_read_the_rows(experiment):
  c = experiment("cifar10.py:model.depth=4,model.norm='batch',dataset.source=''")
  assert configs.model_overrides(c) == {"depth": 4, "norm": "batch"}
  assert configs.DataSettings.from_config(c).source == "auto"
  assert configs.DataSettings(name="digits") == configs.DataSettings(
      name="digits", source="auto", path="", resolution=0, streaming=False, holdout=0)


# ------------------------------------------- m3d.estimator / m3d.kernel reach the objective

def _feats(seed=0, c=3, n=12, m=5, d=16):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return (jax.random.normal(k1, (c, n, d)), 0.5 + jax.random.normal(k2, (c, m, d)))


def _settings(**kw):
  return steps.StepSettings(method="m3d", seed=0, num_classes=3, image_shape=(8, 8, 1),
                            mean=(0.5,), std=(0.25,), ipc=5, batch_real=12, **kw)


def test_estimator_field_reaches_the_m3d_objective(experiment):
  c = experiment("cifar10.py:method=m3d,ipc=10,m3d.estimator=unbiased")
  configs.validate(c)
  s = configs.step_settings(c, registry.get_info("cifar10"))
  assert s.estimator == "unbiased" and s.kernel == "gaussian"
  assert configs.step_settings(experiment("cifar10.py:method=m3d"),
                               registry.get_info("cifar10")).estimator == "biased"
  assert "m3d.estimator" in configs.trajectory_dict(c)     # changes the trajectory


@pytest.mark.parametrize("kernel", ["gaussian", "linear", "polynomial"])
def test_objective_honours_estimator_and_kernel(kernel):
  real, syn = _feats()
  got = {}
  for est in ("biased", "unbiased"):
    loss, terms = steps._objective_terms(real, syn, None, None,  # pylint: disable=protected-access
                                         _settings(kernel=kernel, estimator=est))
    want = mmd.mmd2(syn, real, kernel=kernel, estimator=est)
    np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(terms["mmd"], want, rtol=1e-5, atol=1e-6)
    got[est] = np.asarray(loss)
  # mmd.py: the U-statistic drops the diagonal self-similarities -> a different value.
  assert not np.allclose(got["biased"], got["unbiased"], rtol=1e-3)
  if kernel == "gaussian":   # biased >= unbiased here: k(a, a) = 5 is the largest value
    assert np.all(got["biased"] > got["unbiased"])


def test_kernels_give_different_losses():
  real, syn = _feats(1)
  vals = [np.asarray(steps._objective_terms(real, syn, None, None,  # pylint: disable=protected-access
                                            _settings(kernel=k))[0])
          for k in ("gaussian", "linear", "polynomial")]
  assert not np.allclose(vals[0], vals[1]) and not np.allclose(vals[1], vals[2])


@pytest.mark.parametrize("arg,msg", [
    ("method=m3d,m3d.estimator=unbiasd",
     "m3d.estimator: unknown value 'unbiasd' (choose from biased, unbiased); did you mean "
     "'unbiased'?"),
    ("method=m3d,m3d.estimator=3", "m3d.estimator: unknown value 3"),
    ("method=m3d,m3d.kernel=rbf", "m3d.kernel: unknown value 'rbf' (choose from linear, "
     "gaussian, polynomial)"),
    ("method=m3d,ipc=1,synthetic.factor=1,m3d.estimator=unbiased",
     "m3d.estimator: 'unbiased' needs >= 2 synthetic and real images per class each step "
     "(has 1 and 128); use 'biased'"),
    ("method=m3d,batch_real=1,m3d.estimator=unbiased", "(has 40 and 1)"),
])
def test_bad_values_are_one_line_errors(arg, msg, experiment):
  c = experiment(f"cifar10.py:{arg}")
  with pytest.raises(ConfigError) as err:
    configs.validate(c)
  assert msg in str(err.value) and "\n" not in str(err.value)


def test_unbiased_with_one_image_is_fine_for_other_methods(experiment):
  configs.validate(experiment("cifar10.py:method=dm,ipc=1,m3d.estimator=unbiased"))


@pytest.mark.parametrize("name,classes", [("imagenet10", 10), ("imagenet100", 100)])
@pytest.mark.parametrize("arg", [None, "method=dm,ipc=1", "method=m3d,ipc=20",
                                 "method=ddm,ipc=10", "method=m3d,ipc=1,runlocal"])
def test_imagenet_configs_build_and_validate(name, classes, arg, experiment):
  c = experiment(f"{name}.py:{arg}" if arg else f"{name}.py")
  configs.validate(c)
  info = registry.get_info(c.dataset.name, resolution=c.dataset.resolution or None)
  configs.validate_shapes(c, info.image_shape)
  s = configs.step_settings(c, info)
  assert info.num_classes == classes and s.image_shape == (224, 224, 3)
  assert s.model_name == "resnetap10" and c.eval.model == "resnetap10"
  if arg is None:
    assert s.method == "m3d" and s.factor == 2 and c.eval.protocol == "idc"
  if name == "imagenet100" and arg is None:
    assert (c.eval.lr, c.eval.weight_decay, c.eval.batch_size) == (0.1, 1e-4, 128)
