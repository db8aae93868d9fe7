"""ResNets for cross-architecture evaluation (DM and IDC protocols), NHWC, PyTorch default init.

Structure choices (the papers name the nets; the layouts follow DM's networks.py and
IDC's models/resnet_ap.py as commonly known, written in our own code):

- ResNet-18 / ResNet-18-BN (DM): CIFAR stem Conv3x3 64 (stride 1, padding 1, no bias,
  also for 1-channel input) -> norm -> ReLU, no max-pool; BasicBlock stages
  (2, 2, 2, 2) x (64, 128, 256, 512), first block of stages 2-4 with stride 2; shortcut
  Conv1x1 (stride s, no bias) -> norm when the shape changes. Head: global average pool
  -> Dense K. DM uses `avg_pool2d(out, 4)`, which is the global pool at 28/32 px (4x4
  maps); the global pool keeps Linear(512, K) valid at 64 px and above.
- ResNet-18-AP / ResNet-18-BN-AP (DM ResNet_AP): every stride-2 conv becomes a stride-1
  conv followed by AvgPool 2x2; the shortcut is Conv1x1 (stride 1) -> AvgPool 2 -> norm.
  Head: flatten the last map (4x4x512 at 32 px, 3x3x512 at 28 px, as the reference's
  Linear(512*4*4 / 512*3*3)) -> Dense K.
- ResNetAP-10 (IDC/M3D `resnetap10_in`, the ImageNet branch of IDC's ResNetAP): stages
  (1, 1, 1, 1) x (64, 128, 256, 512) of AP BasicBlocks, instance norm, and IDC's
  size-dependent stem: H <= 64 "small" Conv3x3; 64 < H <= 128 "mid" Conv3x3 + AvgPool 2;
  H > 128 "large" Conv7x7 (padding 3) + AvgPool 4 (stride 4); each stem conv is stride 1
  and followed by norm -> ReLU. Head: global average pool -> Dense K.
  IDC re-initialises its convs with He-normal (fan-out); we keep PyTorch default init
  for all nets, as for the other evaluation nets.
- Norm: "instance" = GroupNorm(C, C), "batch" = BatchNorm2d, "none" (convs get a bias
  then, as in IDC).

Embedding = the input of the final Dense. Taps: per main-path conv (stem, then conv1 and
conv2 of every block), the conv output ("conv") and its norm output ("norm").
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxcond.nets import torch_init
from jaxcond.nets.convnet import new_taps, record


class BasicBlock(nn.Module):
  """Two Conv3x3 -> norm with an identity or projection shortcut.

  `avgpool_downsample=True` is the "AP" block: stride-1 convs, AvgPool(stride) after the
  first conv's activation and inside the shortcut (Conv1x1 -> AvgPool -> norm).
  """
  planes: int
  stride: int = 1
  norm: str = "instance"
  avgpool_downsample: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool, taps=None):
    use_bias = self.norm == "none"
    in_planes = x.shape[-1]
    conv_stride = 1 if self.avgpool_downsample else self.stride

    def norm(y):
      layer = torch_init.norm_layer(self.norm, train)
      return y if layer is None else layer(y)

    y = torch_init.conv(self.planes, in_planes, 3, strides=conv_stride, padding=1,
                        use_bias=use_bias)(x)
    z = norm(y)
    record(taps, y, z)
    out = nn.relu(z)
    if self.avgpool_downsample and self.stride != 1:
      out = torch_init.pool(out, "avg", self.stride)
    y = torch_init.conv(self.planes, self.planes, 3, padding=1, use_bias=use_bias)(out)
    z = norm(y)
    record(taps, y, z)
    out = z

    shortcut = x
    if self.stride != 1 or in_planes != self.planes:
      shortcut = torch_init.conv(self.planes, in_planes, 1, strides=conv_stride,
                                 padding=0, use_bias=use_bias)(x)
      if self.avgpool_downsample and self.stride != 1:
        shortcut = torch_init.pool(shortcut, "avg", self.stride)
      shortcut = norm(shortcut)
    return nn.relu(out + shortcut)


class ResNet(nn.Module):
  """Configurable BasicBlock ResNet; see the module docstring for the named variants.

  stem: "cifar" (Conv3x3 stride 1, no pooling) or "idc" (size-dependent IDC stem).
  head: "gap" (global average pool) or "flatten".
  """
  num_classes: int
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  widths: Sequence[int] = (64, 128, 256, 512)
  norm: str = "instance"
  avgpool_downsample: bool = False
  stem: str = "cifar"
  head: str = "gap"

  @nn.compact
  def __call__(self, x, *, train: bool = False, features_only: bool = False,
               collect_taps: bool = False):
    taps = new_taps(collect_taps)
    use_bias = self.norm == "none"
    size = x.shape[-3]
    kernel, padding, stem_pool = 3, 1, 1
    if self.stem == "idc" and 64 < size <= 128:
      stem_pool = 2
    elif self.stem == "idc" and size > 128:
      kernel, padding, stem_pool = 7, 3, 4
    y = torch_init.conv(self.widths[0], x.shape[-1], kernel, padding=padding,
                        use_bias=use_bias)(x)
    norm = torch_init.norm_layer(self.norm, train)
    z = y if norm is None else norm(y)
    record(taps, y, z)
    x = nn.relu(z)
    if stem_pool > 1:
      x = torch_init.pool(x, "avg", stem_pool)

    for stage, (num_blocks, planes) in enumerate(zip(self.stage_sizes, self.widths)):
      for b in range(num_blocks):
        stride = 2 if (stage > 0 and b == 0) else 1
        x = BasicBlock(planes, stride, self.norm, self.avgpool_downsample)(
            x, train=train, taps=taps)

    if self.head == "gap":
      feats = jnp.mean(x, axis=(-3, -2))
    else:
      feats = x.reshape(x.shape[0], -1)
    if features_only:
      return feats, taps
    return torch_init.dense(self.num_classes, feats.shape[-1])(feats), taps
