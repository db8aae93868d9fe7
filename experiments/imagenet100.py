"""ImageNet-100 (IDC's setting, M3D's ImageNet benchmark): 100 classes at 224×224, ResNetAP-10.

Run (data as for experiments/imagenet10.py; only the 100 classes are read, each host of a
multi-process run reads only the classes on its devices):

  python -m jaxcond.condense --config experiments/imagenet100.py:method=m3d,ipc=10 --workdir runs/in100_m3d_ipc10
  python -m jaxcond.condense --config experiments/imagenet100.py:method=m3d,ipc=20 --workdir runs/in100_m3d_ipc20
  python -m jaxcond.condense --config experiments/imagenet100.py:method=dm,ipc=10 --workdir runs/in100_dm_ipc10

Settings (IDC arXiv 2205.14959 protocol; M3D arXiv 2312.15927 and its code's config):
- classes: IDC `misc/class100.txt` (the registry's imagenet100; docs/data.md);
- 224×224, Resize + CenterCrop; condensation and evaluation net ResNetAP-10 (instance norm);
- M3D (default method): the method defaults, as for ImageNet-10. M3D condenses ImageNet-100
  in 5 processes of 20 classes (`--nclass_sub 20`); here the class axis is sharded over the
  devices instead, which gives the same per-class objective;
- evaluation for >= 100 classes as IDC's `argument.py`: lr 0.1, weight decay 1e-4, batch 128.
- CHOICES (NOT FOUND): factor 2, lr min(ipc, 10), 5000 iterations (as for ImageNet-10).

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
  eval.batch_size             128                                  128                           = dm                      = dm
  eval.lr                     0.1                                  0.1                           = dm                      = dm
  eval.momentum               0.9                                  0.9                           = dm                      = dm
  eval.weight_decay           0.0001                               0.0001                        = dm                      = dm
  eval.strategy               color_crop_cutout_flip_scale_rotate  color_crop_flip_scale_rotate  = dm                      = m3d
  eval.mix_p                  0.0                                  0.5                           = dm                      = m3d
  eval.beta                   1.0                                  1.0                           = dm                      = dm
  eval.eval_every_epochs      ·                                    500                           ·                         100

Reported accuracies (%, ResNetAP-10, IDC protocol, arXiv 2205.14959): IDC IPC 10 / 20 =
46.7 / 53.7. M3D: NOT FOUND in our sources (arXiv 2312.15927 Table 2).
"""
from jaxcond import configs


def get_config(arg=None):
  arg = configs.parse_arg(arg)
  c = configs.method_config("imagenet100", method=arg.pop("method", "m3d"),
                            ipc=arg.pop("ipc", 10), model="resnetap10")
  # IDC argument.py: >= 100 classes train with lr 0.1, wd 1e-4, batch 128 (every method)
  c.eval.lr = 0.1
  c.eval.weight_decay = 1e-4
  c.eval.batch_size = 128
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
