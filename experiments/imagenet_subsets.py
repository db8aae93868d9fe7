"""ImageNet subsets at 128×128 (MTT lists: imagenette, imagewoof, imagemeow, imagesquawk,
imagefruit, imageyellow; 10 classes each): DM / M3D / DDM / NCFM with ConvNet-5.

Run (data: an ImageNet ImageFolder tree `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG` under
$JAXCOND_DATA_DIR/imagenet, or a prepared TFDS imagenet2012):

  python -m jaxcond.condense --config experiments/imagenet_subsets.py:subset=imagenette,method=dm,ipc=10 --workdir runs/nette_dm_ipc10
  python -m jaxcond.condense --config experiments/imagenet_subsets.py:subset=imagewoof,method=m3d,ipc=10 --workdir runs/woof_m3d_ipc10
  python -m jaxcond.condense --config experiments/imagenet_subsets.py:subset=imagewoof,method=ddm,ipc=10 --workdir runs/woof_ddm_ipc10
  python -m jaxcond.pool --config experiments/imagenet_subsets.py:subset=imagewoof --workdir runs/woof_pool
  python -m jaxcond.condense --config experiments/imagenet_subsets.py:subset=imagewoof,method=ncfm,ipc=10 --workdir runs/woof_ncfm_ipc10 --config.pool.path=runs/woof_pool
  CPU smoke run: experiments/imagenet_subsets.py:subset=imagenette,method=dm,ipc=1,runlocal

ConvNetD5 (feature dim 2048; MTT commands, DANCE "5-layer ConvNet"), resolution 128
(Normalize -> Resize(128) -> CenterCrop(128)); method defaults as everywhere else, the same
for every subset. M3D's own 128 px setting is not found (DANCE, same lineage, uses depth 5).

Values (`configs.values_table`; home and reasons: jaxcond/configs/methods.py; a cell
`a / b / c / d` = the value at IPC 1 / 10 / 50 / 100 where they differ, M3D's lr is
min(ipc, 10) in between; `·` = not read by that method; `= dm` / `= m3d`: as
for dm / m3d):

  field                       dm                                   m3d                           ddm                       ncfm
  model.name                  convnetd5                            convnetd5                     = dm                      = dm
  eval.model                  convnetd5                            convnetd5                     = dm                      = dm
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

Expected accuracy (ConvNetD5, %), reported, DM IPC 1 / 10 (as tabulated by DANCE Table 2):
- ImageNette 32.8±0.5 / 58.1±0.3 (whole 87.4±1.0)
- ImageWoof 21.1±1.2 / 31.4±0.5 (whole 67.0±1.3)
- ImageSquawk 31.2±0.7 / 50.4±1.2 (whole 87.5±0.3)
- ImageFruit / ImageMeow / ImageYellow: DM not reported.
- M3D and DDM: not found (the DDM abstract, arXiv 2412.04748, claims +3.3 on ImageWoof,
  +2.5 on ImageNette).
Measured here: none yet.
"""
from jaxcond import configs

SUBSETS = ("imagenette", "imagewoof", "imagemeow", "imagesquawk", "imagefruit", "imageyellow")


def get_config(arg=None):
  arg = configs.parse_arg(arg)
  subset = configs.check_choice("subset", arg.pop("subset", "imagenette"), SUBSETS)
  c = configs.method_config(subset, method=arg.pop("method", "dm"),
                            ipc=arg.pop("ipc", 10), model="convnetd5")
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
