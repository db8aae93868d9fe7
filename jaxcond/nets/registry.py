"""The net registry: every name `get_model` builds, its presets and allowed overrides.

ConvNet presets are DM's ConvNet{D*,W*,BN,LN,GN,NN,MP,NP,AS,AL,ASwish,ASwishBN} (DM, arXiv
2110.04181, and the DM authors' networks.py); the other names are the evaluation
architectures of DM's and IDC's (arXiv 2205.14959) cross-architecture tables.
"""
from __future__ import annotations

import operator
from typing import Any

import flax.linen as nn
import jax

from jaxcond.errors import ConfigError
from jaxcond.nets import torch_init
from jaxcond.nets.classic import MLP, VGG, AlexNet, LeNet
from jaxcond.nets.convnet import ConvNet
from jaxcond.nets.functional import variable_shapes
from jaxcond.nets.resnet import ResNet

# ConvNet presets: DM's ConvNet{D*,W*,BN,LN,GN,NN,MP,NP,AS,AL,ASwish,ASwishBN}.
_CONVNET_PRESETS: dict[str, dict[str, Any]] = {
    "convnet": {},
    **{f"convnetd{d}": {"depth": d} for d in range(1, 7)},
    "convnet_bn": {"norm": "batch"},
    "convnet_ln": {"norm": "layer"},
    "convnet_gn": {"norm": "group"},
    "convnet_nn": {"norm": "none"},
    **{f"convnetw{w}": {"width": w} for w in (32, 64, 128, 256)},
    "convnet_mp": {"pool": "max"},
    "convnet_np": {"pool": "none"},
    "convnet_as": {"act": "sigmoid"},
    "convnet_al": {"act": "leakyrelu"},
    "convnet_aswish": {"act": "swish"},
    "convnet_aswish_bn": {"act": "swish", "norm": "batch"},
}

# name -> (builder, fixed kwargs, allowed override -> allowed values or None for int>=1)
_OTHER_NETS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "mlp": (MLP, {}, {}),
    "lenet": (LeNet, {}, {}),
    "alexnet": (AlexNet, {"norm": "none"}, {"norm": ("none", "batch")}),
    "alexnet_bn": (AlexNet, {"norm": "batch"}, {"norm": ("none", "batch")}),
    "vgg11": (VGG, {"norm": "instance"}, {"norm": ("instance", "batch", "none")}),
    "vgg11_bn": (VGG, {"norm": "batch"}, {"norm": ("instance", "batch", "none")}),
    "resnet18": (ResNet, {"norm": "instance"}, {"norm": ("instance", "batch", "none")}),
    "resnet18_bn": (ResNet, {"norm": "batch"}, {"norm": ("instance", "batch", "none")}),
    "resnet18_ap": (ResNet, {"norm": "instance", "avgpool_downsample": True,
                             "head": "flatten"},
                    {"norm": ("instance", "batch", "none")}),
    "resnet18_bn_ap": (ResNet, {"norm": "batch", "avgpool_downsample": True,
                                "head": "flatten"},
                       {"norm": ("instance", "batch", "none")}),
    "resnetap10": (ResNet, {"norm": "instance", "stage_sizes": (1, 1, 1, 1),
                            "avgpool_downsample": True, "stem": "idc", "head": "gap"},
                   {"norm": ("instance", "batch", "none")}),
}

MODEL_NAMES: tuple[str, ...] = tuple(_CONVNET_PRESETS) + tuple(_OTHER_NETS)

_CONVNET_OVERRIDES = {"depth": None, "width": None, "norm": torch_init.NORMS,
                      "act": torch_init.ACTIVATIONS, "pool": torch_init.POOLS}

# Spellings accepted for override values (DM's argparse strings and short forms).
_VALUE_ALIASES = {
    "instancenorm": "instance", "in": "instance", "batchnorm": "batch", "bn": "batch",
    "layernorm": "layer", "ln": "layer", "groupnorm": "group", "gn": "group",
    "nn": "none", "avgpooling": "avg", "ap": "avg", "maxpooling": "max", "mp": "max",
    "np": "none", "silu": "swish", "leaky_relu": "leakyrelu",
}


def _check_override(name: str, field: str, value, allowed):
  if allowed is None:   # positive integer field
    try:
      if isinstance(value, bool):
        raise TypeError
      value = operator.index(value)
    except TypeError:
      raise ConfigError(f"model {name!r}: {field} must be a positive integer, "
                        f"got {value!r}") from None
    if value < 1:
      raise ConfigError(f"model {name!r}: {field} must be >= 1, got {value}")
    return value
  key = str(value).lower()
  key = _VALUE_ALIASES.get(key, key)
  if key not in allowed:
    raise ConfigError(f"model {name!r}: {field}={value!r} is not one of {allowed}")
  return key


def _check_image_shape(image_shape) -> tuple[int, int, int]:
  try:
    shape = tuple(operator.index(s) for s in image_shape)
  except TypeError:
    raise ConfigError(f"image_shape must be (H, W, channels) integers, got "
                      f"{image_shape!r}") from None
  if len(shape) != 3 or min(shape) < 1:
    raise ConfigError(f"image_shape must be (H, W, channels) positive integers, got "
                      f"{image_shape!r}")
  return shape


def get_model(name: str, *, num_classes: int, image_shape, **overrides) -> nn.Module:
  """The registered net `name` (case-insensitive, see MODEL_NAMES).

  `overrides` set depth/width/norm/act/pool for the ConvNet family and norm for
  AlexNet/VGG/ResNets. Raises ConfigError for an unknown name or override, or when
  `image_shape` is too small for the net.
  """
  key = str(name).lower()
  if key not in MODEL_NAMES:
    raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
  try:
    if isinstance(num_classes, bool):
      raise TypeError
    count = operator.index(num_classes)
  except TypeError:
    count = 0
  if count < 1:
    raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
  num_classes = count
  image_shape = _check_image_shape(image_shape)

  if key in _CONVNET_PRESETS:
    builder, kwargs, allowed = ConvNet, dict(_CONVNET_PRESETS[key]), _CONVNET_OVERRIDES
  else:
    builder, kwargs, allowed = _OTHER_NETS[key]
    kwargs = dict(kwargs)
  for field, value in overrides.items():
    if field not in allowed:
      raise ConfigError(f"model {name!r} takes no override {field!r}; allowed: "
                        f"{tuple(allowed) or 'none'}")
    kwargs[field] = _check_override(key, field, value, allowed[field])
  if builder is ConvNet and kwargs.get("norm") == "group" and kwargs.get("width", 128) % 4:
    raise ConfigError(f"model {name!r}: group norm uses 4 groups, so width must be a "
                      f"multiple of 4, got {kwargs['width']}")
  model = builder(num_classes=num_classes, **kwargs)

  try:
    abstract = variable_shapes(model, image_shape)
  except ConfigError as err:
    raise ConfigError(f"image_shape {image_shape} is too small for model {name!r} "
                      f"({err})") from None
  except Exception as err:  # shape errors surface from inside flax/lax as various types
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    raise ConfigError(f"image_shape {image_shape} is too small for model {name!r} "
                      f"({message})") from None
  if any(leaf.size == 0 for leaf in jax.tree.leaves(abstract)):
    raise ConfigError(f"image_shape {image_shape} is too small for model {name!r} "
                      f"(empty feature map)")
  return model
