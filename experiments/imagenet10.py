"""ImageNet-10 (IDC's setting, M3D's ImageNet benchmark): 10 classes at 224×224, ResNetAP-10.

Run (data: an ImageNet ImageFolder tree `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG` under
$JAXCOND_DATA_DIR/imagenet, or a prepared TFDS imagenet2012; only the 10 classes are read):

  python -m jaxcond.condense --config experiments/imagenet10.py:method=m3d,ipc=10 --workdir runs/in10_m3d_ipc10
  python -m jaxcond.condense --config experiments/imagenet10.py:method=m3d,ipc=20 --workdir runs/in10_m3d_ipc20
  python -m jaxcond.condense --config experiments/imagenet10.py:method=dm,ipc=10 --workdir runs/in10_dm_ipc10
  CPU smoke run (needs the data): experiments/imagenet10.py:method=m3d,ipc=1,runlocal

Settings (IDC arXiv 2205.14959 protocol; M3D arXiv 2312.15927 and its code's config):
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

Values (`configs.values_table`; home and reasons: jaxcond/configs/methods.py; a cell
`a / b / c / d` = the value at IPC 1 / 10 / 50 / 100 where they differ, M3D's lr is
min(ipc, 10) in between; `·` = not read by that method; `= dm` / `= m3d`: as
for dm / m3d):

  field                       dm                                   m3d                           ddm                       ncfm
  model.name                  resnetap10                           resnetap10                    = dm                      = dm
  eval.model                  resnetap10                           resnetap10                    = dm                      = dm
  steps                       20000                                5000                          = dm                      = dm
  batch_real                  256                                  128                           = dm                      1024
  synthetic.init              real                                 mix                           = dm                      = m3d
  synthetic.factor            1                                    2                             = dm                      = m3d
  synthetic.space             normalized                           unit                          = dm                      = m3d
  synthetic.lr                1.0                                  1.0 / 10.0 / 10.0 / 10.0      = dm                      0.001
  synthetic.momentum          0.5                                  0.5                           = dm                      ·
  synthetic.optimizer         sgd                                  sgd                           = dm                      adamw
  synthetic.weight_decay      0.0                                  0.0                           = dm                      0.0005
  synthetic.plateau_patience  0                                    0                             = dm                      500
  synthetic.batch_syn_max     0                                    200                           = dm                      = dm
  augment.policy              dm                                   idc                           = dm                      = m3d
  augment.strategy            color_crop_cutout_flip_scale_rotate  color_crop_cutout             = dm                      = m3d
  calib.weight                0.0                                  0.0                           = dm                      1.0
  m3d.kernel                  ·                                    gaussian                      ·                         ·
  m3d.ipm                     ·                                    5                             ·                         ·
  m3d.step_mode               ·                                    per_class                     ·                         ·
  ddm.mm_weight               ·                                    ·                             10000.0                   ·
  ddm.cm_weight               ·                                    ·                             0.0                       ·
  ddm.icd_weight              ·                                    ·                             0.0 / 10.0 / 10.0 / 10.0  ·
  ddm.style_mode              ·                                    ·                             batchavg                  ·
  ddm.style_tap               ·                                    ·                             norm                      ·
  ddm.k                       ·                                    ·                             0                         ·
  ncfm.num_freqs              ·                                    ·                             ·                         4096
  ncfm.alpha                  ·                                    ·                             ·                         0.5
  ncfm.beta                   ·                                    ·                             ·                         0.5
  ncfm.scale                  ·                                    ·                             ·                         300.0
  eval.protocol               dm                                   idc                           = dm                      ncfm
  eval.epochs                 1000                                 1000                          = dm                      2000
  eval.batch_size             256                                  64                            = dm                      128
  eval.lr                     0.01                                 0.01                          = dm                      0.001
  eval.momentum               0.9                                  0.9                           = dm                      = dm
  eval.weight_decay           0.0005                               0.0005                        = dm                      0.01
  eval.strategy               color_crop_cutout_flip_scale_rotate  color_crop_flip_scale_rotate  = dm                      = m3d
  eval.mix_p                  0.0                                  0.5                           = dm                      = m3d
  eval.beta                   1.0                                  1.0                           = dm                      = dm
  eval.eval_every_epochs      ·                                    500                           ·                         100

Reported accuracies (%, ResNetAP-10, IDC protocol, arXiv 2205.14959): IDC IPC 10 / 20 =
72.8 / 76.6. M3D: NOT FOUND in our sources (the abstract claims it surpasses IDC on
high-resolution ImageNet; see arXiv 2312.15927 Table 2).
"""
from jaxcond import configs


def get_config(arg=None):
  arg = configs.parse_arg(arg)
  c = configs.method_config("imagenet10", method=arg.pop("method", "m3d"),
                            ipc=arg.pop("ipc", 10), model="resnetap10")
  if arg.pop("runlocal", False):   # CPU smoke run: seconds to a minute, not paper fidelity
    c.steps = 20
    c.checkpoint_every = 10
    c.log_every = 5
    c.batch_real = min(c.batch_real, 16)
    c.model.width = 32
    c.synthetic.batch_syn_max = min(c.synthetic.batch_syn_max or 64, 64)
    c.eval.num_nets = 1
    c.eval.epochs = 20
    c.eval.batch_size = min(c.eval.batch_size, 64)
    c.eval.eval_every_epochs = 10
    c.eval.every = 0
  return configs.override(c, arg)  # any `field=value` of the arg, applied last
