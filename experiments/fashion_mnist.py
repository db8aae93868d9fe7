"""Fashion-MNIST (28×28 grey, 10 classes): DM / M3D / DDM with the papers' defaults.

Run (data: IDX files under $JAXCOND_DATA_DIR/fashion_mnist, or --config.dataset.path):

  python -m jaxcond.condense --config experiments/fashion_mnist.py:method=dm,ipc=10 --workdir runs/fmnist_dm_ipc10
  python -m jaxcond.condense --config experiments/fashion_mnist.py:method=m3d,ipc=10 --workdir runs/fmnist_m3d_ipc10
  python -m jaxcond.condense --config experiments/fashion_mnist.py:method=ddm,ipc=10 --workdir runs/fmnist_ddm_ipc10

Defaults: ConvNet-3; DM/DDM keep flip in DSA (the DM README drops it only for MNIST/SVHN).

Reported accuracies (ConvNet, %, methods.md §6):
- DM (DANCE Table 1): IPC 1 / 10 / 50 = 70.7±0.6 / 83.5±0.3 / 88.1±0.6 (whole set 93.5±0.1).
- M3D, DDM: NOT FOUND. IDC (M3D's parent): IPC 1 / 10 / 50 = 81.0 / 86.0 / 86.2.
"""
from jaxcond import configs


def get_config(arg=None):
  return configs.make_config("fashion_mnist", arg)
