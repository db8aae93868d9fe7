"""Random feature nets and evaluation architectures (DM, arXiv 2110.04181, and the DM
authors' networks.py; design in docs/design.md).

All nets are flax.linen modules on NHWC float32 images with PyTorch's default
initialisation (`torch_init`). The functional API re-exported here is what the rest of
jaxcond uses:

    model = get_model("convnet", num_classes=10, image_shape=(32, 32, 3))
    variables = init_variables(model, key, (32, 32, 3))   # jittable, key may be traced
    feats = embed(model, variables, x, train=True)          # [N, 2048]
    out, new_stats = logits(model, variables, x, train=True)

Condensation nets with BatchNorm run in train mode (batch statistics) like the
reference; `embed` then discards the statistic updates, `logits` returns them.

One module per idea: `registry` (names, presets, `get_model`), `functional` (variables,
shapes, `embed`, `logits`), `convnet` / `classic` / `resnet` (the modules), `torch_init`
(PyTorch's default initialisation), `cpu_conv` (the XLA:CPU convolution).
"""
from jaxcond.nets.classic import MLP, VGG, AlexNet, LeNet
from jaxcond.nets.convnet import ConvNet
from jaxcond.nets.functional import embed, feature_dim, init_variables, logits, variable_shapes
from jaxcond.nets.registry import MODEL_NAMES, get_model
from jaxcond.nets.resnet import ResNet

__all__ = ("MODEL_NAMES", "get_model", "init_variables", "embed", "logits",
           "feature_dim", "variable_shapes", "ConvNet", "MLP", "LeNet", "AlexNet",
           "VGG", "ResNet")
