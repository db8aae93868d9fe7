"""SVHN (32×32 RGB, 10 classes): DM / M3D / DDM with the papers' defaults.

Run (data: SVHN `train_32x32.mat` / `test_32x32.mat` under $JAXCOND_DATA_DIR/svhn, or TFDS):

  python -m jaxcond.condense --config experiments/svhn.py:method=dm,ipc=10 --workdir runs/svhn_dm_ipc10
  python -m jaxcond.condense --config experiments/svhn.py:method=m3d,ipc=1 --workdir runs/svhn_m3d_ipc1
  python -m jaxcond.condense --config experiments/svhn.py:method=ddm,ipc=10 --workdir runs/svhn_ddm_ipc10

Defaults: ConvNet-3; DSA without flip for DM/DDM (DM README).

Reported accuracies (ConvNet, %, methods.md §6):
- DM: NOT FOUND in readable sources.
- M3D: IPC 1 = 62.8 (paper value quoted in M3D issue #3; a user reproduced 58).
- DDM: NOT FOUND. IDC: IPC 1 / 10 / 50 = 68.5 / 87.5 / 90.1.
"""
from jaxcond import configs


def get_config(arg=None):
  return configs.make_config("svhn", arg)
