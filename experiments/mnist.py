"""MNIST (28×28 grey, 10 classes): DM / M3D / DDM with the papers' defaults.

Run (data: the IDX files, found under $JAXCOND_DATA_DIR/mnist, or --config.dataset.path):

  python -m jaxcond.condense --config experiments/mnist.py:method=dm,ipc=10 --workdir runs/mnist_dm_ipc10
  python -m jaxcond.condense --config experiments/mnist.py:method=m3d,ipc=10 --workdir runs/mnist_m3d_ipc10
  python -m jaxcond.condense --config experiments/mnist.py:method=ddm,ipc=10 --workdir runs/mnist_ddm_ipc10
  CPU smoke run: experiments/mnist.py:method=dm,ipc=10,runlocal

Defaults (methods.md §2.3 / §3.4 / §4): ConvNet-3 (the first conv pads 28 -> 32), DSA
without flip for DM/DDM (DM README, digits), M3D evaluation with `color_crop` and no CutMix
(IDC's MNIST setting with factor > 1).

Reported accuracies (ConvNet, %, methods.md §6):
- DM: MNIST numbers NOT FOUND in readable sources.
- M3D: an MNIST entry "98.x" (truncated listing); exact IPC NOT FOUND.
- DDM: NOT FOUND.
- For reference, IDC (M3D's parent): IPC 1 / 10 / 50 = 94.2 / 98.4 / 99.1.
"""
from jaxcond import configs


def get_config(arg=None):
  return configs.make_config("mnist", arg)
