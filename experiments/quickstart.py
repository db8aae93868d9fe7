"""Quickstart: DM on scikit-learn `digits` (8×8 grey, 10 classes, always offline).

Run (about a minute on 2 CPU cores, including a short evaluation):

  python -m jaxcond.condense --config experiments/quickstart.py --workdir runs/quickstart

Other methods / IPCs: `experiments/quickstart.py:method=m3d`, `:method=ddm,ipc=5`.

What it does: condenses the 1442 training digits (~144 per class) into 10 images per
class with DM (methods.md §2: fresh random ConvNet every step, siamese DSA without flip,
SGD lr 1 / momentum 0.5 on normalised pixels, real init), then trains 2 ConvNets from
scratch on the 100 synthetic images (DM protocol, 300 epochs instead of 1000) and tests
them on the 355 held-out digits. It is a smoke test of the whole pipeline, not a paper
setting: no paper reports digits.

Choices for 8×8 inputs (not from the papers):
- ConvNet depth 2 (`convnetd2`): a 1-channel input is padded by 3 in the first conv, so
  8×8 acts as 12×12 -> 6×6 -> 3×3 after two blocks (feature dim 128·3·3 = 1152); a third
  block would pool to 1×1 and keep no spatial layout.
- 300 steps and batch_real 64 (a class has ~144 training images), eval 300 epochs x 2 nets.
Expected: DM reaches roughly 85-90 % test accuracy here (random 10 images/class ≈ 80 %);
see docs/condense.md for the measured number.
"""
from jaxcond import configs


def _quick(c):
  c.steps = 300 if c.method != "m3d" else 200
  c.batch_real = 64
  c.checkpoint_every = 100
  c.log_every = 50
  c.eval.num_nets = 2
  c.eval.epochs = 300
  c.eval.eval_every_epochs = 100
  if c.method == "m3d":
    c.synthetic.factor = 2        # 8×8 -> four 4×4 cells, decoded back to 8×8


def get_config(arg=None):
  return configs.make_config("digits", arg, model="convnetd2", hook=_quick)
