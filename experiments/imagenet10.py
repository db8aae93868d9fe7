"""ImageNet-10 (IDC's setting, M3D's ImageNet benchmark): 10 classes at 224×224, ResNetAP-10.

Run (data: an ImageNet ImageFolder tree `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG` under
$JAXCOND_DATA_DIR/imagenet, or a prepared TFDS imagenet2012; only the 10 classes are read):

  python -m jaxcond.condense --config experiments/imagenet10.py:method=m3d,ipc=10 --workdir runs/in10_m3d_ipc10
  python -m jaxcond.condense --config experiments/imagenet10.py:method=m3d,ipc=20 --workdir runs/in10_m3d_ipc20
  python -m jaxcond.condense --config experiments/imagenet10.py:method=dm,ipc=10 --workdir runs/in10_dm_ipc10
  CPU smoke run (needs the data): experiments/imagenet10.py:method=m3d,ipc=1,runlocal

Settings (methods.md §1.1, §3.4, §5.2):
- classes: IDC `misc/class100.txt`, first 10 (the registry's imagenet10; docs/data.md says
  which list ships and how to pass another with `class_list`);
- 224×224, Resize + CenterCrop; condensation and evaluation net ResNetAP-10 (instance norm),
  as IDC and M3D's `evaluate_synset` do for ImageNet;
- M3D (default method): the method defaults (factor 2, init mix, gaussian kernel, biased
  MMD², ipm 5, batch_real 128, batch_syn_max 200, IDC protocol with CutMix and
  best-of-checkpoints).
- CHOICES (NOT FOUND for M3D's ImageNet runs: its per-dataset configs are not public):
  factor 2 (M3D's cfg default; IDC's own ImageNet runs use larger factors), lr min(ipc, 10)
  and 5000 iterations like the other M3D configs. DM/DDM on ImageNet-10: no paper setting;
  their method defaults with ResNetAP-10.

Reported accuracies (%, ResNetAP-10, IDC protocol, methods.md §6): IDC IPC 10 / 20 =
72.8 / 76.6. M3D: NOT FOUND in our sources (the abstract claims it surpasses IDC on
high-resolution ImageNet; see arXiv 2312.15927 Table 2).
"""
from jaxcond import configs


def get_config(arg=None):
  return configs.make_config("imagenet10", arg, model="resnetap10", method_default="m3d")
