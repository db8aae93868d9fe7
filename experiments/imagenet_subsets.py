"""ImageNet subsets at 128×128 (MTT lists: imagenette, imagewoof, imagemeow, imagesquawk,
imagefruit, imageyellow; 10 classes each): DM / M3D / DDM with ConvNet-5.

Run (data: an ImageNet ImageFolder tree `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG` under
$JAXCOND_DATA_DIR/imagenet, or a prepared TFDS imagenet2012):

  python -m jaxcond.condense --config experiments/imagenet_subsets.py:subset=imagenette,method=dm,ipc=10 --workdir runs/nette_dm_ipc10
  python -m jaxcond.condense --config experiments/imagenet_subsets.py:subset=imagewoof,method=m3d,ipc=10 --workdir runs/woof_m3d_ipc10
  python -m jaxcond.condense --config experiments/imagenet_subsets.py:subset=imagewoof,method=ddm,ipc=10 --workdir runs/woof_ddm_ipc10

Defaults: ConvNetD5 (feature dim 2048; MTT commands, DANCE "5-layer ConvNet"), resolution
128 (Normalize -> Resize(128) -> CenterCrop(128), methods.md §1.1); method defaults as
everywhere else. M3D's own 128 px setting is NOT FOUND (DANCE, same lineage, uses depth 5).

Reported accuracies (ConvNetD5, %, DANCE Table 2, methods.md §6.1), DM IPC 1 / 10:
- ImageNette 32.8±0.5 / 58.1±0.3 (whole 87.4±1.0)
- ImageWoof 21.1±1.2 / 31.4±0.5 (whole 67.0±1.3)
- ImageSquawk 31.2±0.7 / 50.4±1.2 (whole 87.5±0.3)
- ImageFruit / ImageMeow / ImageYellow: DM not reported.
- M3D and DDM: NOT FOUND (DDM's abstract claims +3.3 on ImageWoof, +2.5 on ImageNette).
"""
from jaxcond import configs

SUBSETS = ("imagenette", "imagewoof", "imagemeow", "imagesquawk", "imagefruit", "imageyellow")


def get_config(arg=None):
  subset, rest = configs.pop_arg(arg, "subset", "imagenette")
  subset = configs.check_choice("subset", subset, SUBSETS)
  return configs.make_config(subset, rest, model="convnetd5")
