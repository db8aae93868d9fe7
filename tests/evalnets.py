"""Tiny networks and data for the evaluation tests (test_evaluate*.py): one copy of what
those files each defined. `net_fns` wraps a flax module as `jaxcond.evaluate.NetFns`,
returning BatchNorm statistics in training when the module has them."""
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxcond import evaluate as ev


class TinyMLP(nn.Module):
  hidden: int = 32
  classes: int = 10

  @nn.compact
  def __call__(self, x, train=False):
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.classes)(nn.relu(nn.Dense(self.hidden)(x)))


class TinyBN(nn.Module):
  """Dense -> BatchNorm -> ReLU -> Dense: batch statistics across the batch axis."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Dense(16)(x.reshape(x.shape[0], -1))
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
    return nn.Dense(10)(nn.relu(x))


def net_fns(module, shape):
  def init(key):
    return dict(module.init(key, jnp.zeros((1, *shape)), train=False))

  def apply(variables, x, train):
    if train and "batch_stats" in variables:
      out, upd = module.apply(variables, x, train=True, mutable=["batch_stats"])
      return out, upd["batch_stats"]
    return module.apply(variables, x, train=train), None

  return ev.NetFns(init, apply)


def random_data(n=40, shape=(6, 6, 1), seed=0):
  rs = np.random.RandomState(seed)
  return rs.randn(n, *shape).astype(np.float32), (np.arange(n) % 10).astype(np.int32)
