"""Cross-architecture evaluation nets of DM's networks.py (the DM authors' code): MLP, LeNet,
AlexNet(-BN) and VGG-11 (instance norm / BN), NHWC, PyTorch default init.

Layouts (the DM paper gives only the net names; the layouts follow DM's
networks.py as commonly known, written in our own code):

- MLP: flatten -> Dense 128 -> ReLU -> Dense 128 -> ReLU -> Dense K. Embedding: the
  second 128-d hidden layer. No taps (no conv maps).
- LeNet: Conv5x5 6 (padding 2 for 1-channel, else 0) -> ReLU -> MaxPool2 -> Conv5x5 16
  (padding 0) -> ReLU -> MaxPool2 -> flatten (16*5*5 at 28/32 px) -> Dense 120 -> ReLU
  -> Dense 84 -> ReLU -> Dense K. Embedding: the 84-d hidden layer.
- AlexNet: Conv5x5 128 (padding 4 for 1-channel, so 28 -> 32; else 2) -> MaxPool2 ->
  Conv5x5 192 (p2) -> MaxPool2 -> Conv3x3 256 -> Conv3x3 192 -> Conv3x3 192 -> MaxPool2
  -> flatten (192*4*4 at 32 px) -> Dense K; every conv is followed by [BN ->] ReLU.
  The max-pools sit after conv1, conv2 and conv5. Embedding: the flattened conv stack.
- VGG-11: [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M], each number a
  Conv3x3 (bias, padding 1; padding 3 for the first conv of a 1-channel input) -> norm
  (instance = GroupNorm(C, C), or BN) -> ReLU, M a MaxPool2. The reference's identity
  AvgPool(1) is omitted. Classifier Dense on the flattened stack, i.e. Linear(512, K) at
  32 px (and 512 * h * w for larger inputs, where the reference would fail).

Taps: per conv layer, the conv output ("conv") and the pre-activation ("norm"; equal to
the conv output when the net has no norm).
"""
from __future__ import annotations

import flax.linen as nn

from jaxcond.errors import ConfigError
from jaxcond.nets import torch_init
from jaxcond.nets.convnet import new_taps, record

VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _flatten(x):
  return x.reshape(x.shape[0], -1)


class MLP(nn.Module):
  """3 fully connected layers with 128 hidden units (DM networks.MLP)."""
  num_classes: int
  hidden: int = 128

  @nn.compact
  def __call__(self, x, *, train: bool = False, features_only: bool = False,
               collect_taps: bool = False):
    del train
    if collect_taps:
      raise ConfigError("model 'mlp' has no convolutional layers, so taps=True is not "
                        "available")
    h = _flatten(x)
    h = nn.relu(torch_init.dense(self.hidden, h.shape[-1])(h))
    h = nn.relu(torch_init.dense(self.hidden, h.shape[-1])(h))
    if features_only:
      return h, None
    return torch_init.dense(self.num_classes, h.shape[-1])(h), None


class LeNet(nn.Module):
  """LeNet-5 as in DM networks.LeNet (ReLU + max-pool)."""
  num_classes: int

  @nn.compact
  def __call__(self, x, *, train: bool = False, features_only: bool = False,
               collect_taps: bool = False):
    del train
    taps = new_taps(collect_taps)
    padding = 2 if x.shape[-1] == 1 else 0
    for features, pad in ((6, padding), (16, 0)):
      y = torch_init.conv(features, x.shape[-1], 5, padding=pad)(x)
      record(taps, y, y)
      x = torch_init.pool(nn.relu(y), "max")
    h = _flatten(x)
    h = nn.relu(torch_init.dense(120, h.shape[-1])(h))
    h = nn.relu(torch_init.dense(84, h.shape[-1])(h))
    if features_only:
      return h, taps
    return torch_init.dense(self.num_classes, h.shape[-1])(h), taps


class AlexNet(nn.Module):
  """DM's small AlexNet; norm "none" (AlexNet) or "batch" (AlexNetBN)."""
  num_classes: int
  norm: str = "none"

  @nn.compact
  def __call__(self, x, *, train: bool = False, features_only: bool = False,
               collect_taps: bool = False):
    taps = new_taps(collect_taps)
    first_pad = 4 if x.shape[-1] == 1 else 2
    # (features, kernel, padding, max-pool after)
    layers = ((128, 5, first_pad, True), (192, 5, 2, True), (256, 3, 1, False),
              (192, 3, 1, False), (192, 3, 1, True))
    for features, kernel, pad, pool_after in layers:
      y = torch_init.conv(features, x.shape[-1], kernel, padding=pad)(x)
      norm = torch_init.norm_layer(self.norm, train)
      z = y if norm is None else norm(y)
      record(taps, y, z)
      x = nn.relu(z)
      if pool_after:
        x = torch_init.pool(x, "max")
    feats = _flatten(x)
    if features_only:
      return feats, taps
    return torch_init.dense(self.num_classes, feats.shape[-1])(feats), taps


class VGG(nn.Module):
  """VGG with per-conv norm ("instance" = GroupNorm(C, C), or "batch"); default VGG-11."""
  num_classes: int
  norm: str = "instance"
  cfg: tuple = VGG11_CFG

  @nn.compact
  def __call__(self, x, *, train: bool = False, features_only: bool = False,
               collect_taps: bool = False):
    taps = new_taps(collect_taps)
    one_channel = x.shape[-1] == 1
    for i, item in enumerate(self.cfg):
      if item == "M":
        x = torch_init.pool(x, "max")
        continue
      padding = 3 if (one_channel and i == 0) else 1
      y = torch_init.conv(item, x.shape[-1], 3, padding=padding)(x)
      norm = torch_init.norm_layer(self.norm, train)
      z = y if norm is None else norm(y)
      record(taps, y, z)
      x = nn.relu(z)
    feats = _flatten(x)
    if features_only:
      return feats, taps
    return torch_init.dense(self.num_classes, feats.shape[-1])(feats), taps
