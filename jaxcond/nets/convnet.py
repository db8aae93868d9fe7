"""ConvNet: the condensation network of DM / M3D / DDM (DC, Zhao et al. ICLR 2021, arXiv 2006.05929;
the DM authors' networks.py).

Its `embed` is the random feature map ψ_θ of DM's objective (arXiv 2110.04181,
L = Σ_c ‖mean ψ_θ(A(x^c)) − mean ψ_θ(A(s^c))‖²), also used by M3D's MMD (arXiv 2312.15927)
and by DDM's content loss, while the per-block taps feed DDM's style losses (arXiv 2412.04748).

Block d (d = 0..depth-1): Conv3x3 (stride 1, padding 1, bias) -> norm -> act -> pool 2x2.
With a 1-channel input the first conv pads by 3, so a 28x28 image acts as 32x32 (the
reference's "im_size 28 is treated as 32"). The embedding is the flattened (NHWC order)
output of the last block; the classifier is one Dense(num_classes). Feature dim is
width * (H'/2^d) * (W'/2^d) with H' = H + 4 for 1-channel inputs, H otherwise
(CIFAR d=3 -> 2048, MNIST d=3 -> 2048, 64px d=4 -> 2048, 128px d=5 -> 2048).

DDM taps (DDM code's ConvNet_style): per block the conv output (pre-norm) under "conv"
and the norm output (pre-activation) under "norm"; with norm "none" the two coincide.
Norms: instance = GroupNorm(C, C); group = GroupNorm(4, C); layer = DM's
`LayerNorm([C, H, W])` (statistics over H, W, C per sample, elementwise affine [H, W, C]:
the DM paper does not say, DM's networks.py does); batch = BatchNorm2d; none.
"""
from __future__ import annotations

import flax.linen as nn

from jaxcond.nets import torch_init


def new_taps(collect: bool):
  """An empty tap record, or None when taps are not wanted (no extra work)."""
  return {"conv": [], "norm": []} if collect else None


def record(taps, conv_out, norm_out):
  if taps is not None:
    taps["conv"].append(conv_out)
    taps["norm"].append(norm_out)


class ConvNet(nn.Module):
  """DM's ConvNet. norm in torch_init.NORMS, act in ACTIVATIONS, pool in POOLS.

  `__call__(x, train, features_only, collect_taps)` returns `(out, taps)`: `out` is the
  [N, d] embedding when `features_only`, else [N, num_classes] logits; `taps` is None
  unless `collect_taps`. Use `jaxcond.nets.embed` / `logits` rather than calling this.
  """
  num_classes: int
  depth: int = 3
  width: int = 128
  norm: str = "instance"
  act: str = "relu"
  pool: str = "avg"

  @nn.compact
  def __call__(self, x, *, train: bool = False, features_only: bool = False,
               collect_taps: bool = False):
    taps = new_taps(collect_taps)
    act = torch_init.activation(self.act)
    in_channels = x.shape[-1]
    for d in range(self.depth):
      padding = 3 if (in_channels == 1 and d == 0) else 1
      y = torch_init.conv(self.width, x.shape[-1], 3, padding=padding)(x)
      norm = torch_init.norm_layer(self.norm, train)
      z = y if norm is None else norm(y)
      record(taps, y, z)
      x = torch_init.pool(act(z), self.pool)
    feats = x.reshape(x.shape[0], -1)
    if features_only:
      return feats, taps
    return torch_init.dense(self.num_classes, feats.shape[-1])(feats), taps
