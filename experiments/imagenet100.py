"""ImageNet-100 (IDC's setting, M3D's ImageNet benchmark): 100 classes at 224×224, ResNetAP-10.

Run (data as for experiments/imagenet10.py; only the 100 classes are read, each host of a
multi-process run reads only the classes on its devices):

  python -m jaxcond.condense --config experiments/imagenet100.py:method=m3d,ipc=10 --workdir runs/in100_m3d_ipc10
  python -m jaxcond.condense --config experiments/imagenet100.py:method=m3d,ipc=20 --workdir runs/in100_m3d_ipc20
  python -m jaxcond.condense --config experiments/imagenet100.py:method=dm,ipc=10 --workdir runs/in100_dm_ipc10

Settings (methods.md §1.1, §3.4, §5.2):
- classes: IDC `misc/class100.txt` (the registry's imagenet100; docs/data.md);
- 224×224, Resize + CenterCrop; condensation and evaluation net ResNetAP-10 (instance norm);
- M3D (default method): the method defaults, as for ImageNet-10. M3D condenses ImageNet-100
  in 5 processes of 20 classes (`--nclass_sub 20`); here the class axis is sharded over the
  devices instead, which gives the same per-class objective;
- evaluation for >= 100 classes as IDC's `argument.py`: lr 0.1, weight decay 1e-4, batch 128.
- CHOICES (NOT FOUND): factor 2, lr min(ipc, 10), 5000 iterations (as for ImageNet-10).

Reported accuracies (%, ResNetAP-10, IDC protocol, methods.md §6): IDC IPC 10 / 20 =
46.7 / 53.7. M3D: NOT FOUND in our sources (arXiv 2312.15927 Table 2).
"""
from jaxcond import configs


def _eval_100(c):
  c.eval.lr = 0.1            # IDC argument.py, >= 100 classes
  c.eval.weight_decay = 1e-4
  c.eval.batch_size = 128


def get_config(arg=None):
  return configs.make_config("imagenet100", arg, model="resnetap10", method_default="m3d",
                             hook=_eval_100)
