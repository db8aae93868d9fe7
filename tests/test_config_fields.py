"""Config fields for what the library has (issue 15 §6): m3d.estimator, m3d.kernel, and the
ImageNet-10/100 experiment configs."""
import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from jaxcond import configs, mmd, steps
from jaxcond.data import registry
from jaxcond.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _experiment(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _feats(seed=0, c=3, n=12, m=5, d=16):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return (jax.random.normal(k1, (c, n, d)), 0.5 + jax.random.normal(k2, (c, m, d)))


def _settings(**kw):
  return steps.StepSettings(method="m3d", seed=0, num_classes=3, image_shape=(8, 8, 1),
                            mean=(0.5,), std=(0.25,), ipc=5, batch_real=12, **kw)


def test_estimator_field_reaches_the_m3d_objective():
  c = configs.make_config("cifar10", "method=m3d,ipc=10,m3d.estimator=unbiased")
  configs.validate(c)
  s = configs.step_settings(c, registry.get_info("cifar10"))
  assert s.estimator == "unbiased" and s.kernel == "gaussian"
  assert configs.step_settings(configs.make_config("cifar10", "method=m3d"),
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
def test_bad_values_are_one_line_errors(arg, msg):
  c = configs.make_config("cifar10", arg)
  with pytest.raises(ConfigError) as err:
    configs.validate(c)
  assert msg in str(err.value) and "\n" not in str(err.value)


def test_unbiased_with_one_image_is_fine_for_other_methods():
  configs.validate(configs.make_config("cifar10", "method=dm,ipc=1,m3d.estimator=unbiased"))


@pytest.mark.parametrize("name,classes", [("imagenet10", 10), ("imagenet100", 100)])
@pytest.mark.parametrize("arg", [None, "method=dm,ipc=1", "method=m3d,ipc=20",
                                 "method=ddm,ipc=10", "method=m3d,ipc=1,runlocal"])
def test_imagenet_configs_build_and_validate(name, classes, arg):
  c = _experiment(name, arg)
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
