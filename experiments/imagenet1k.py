"""ImageNet-1K (1000 classes, 64×64 by default): DM / M3D / DDM with ConvNet-4.

Run (data: ImageFolder tree under $JAXCOND_DATA_DIR/imagenet or a prepared TFDS
imagenet2012; for a TPU pod or several GPU hosts, start one process per host with
--coordinator_address/--num_processes/--process_id: each host loads only its classes):

  python -m jaxcond.condense --config experiments/imagenet1k.py:method=dm,ipc=10 --workdir runs/in1k_dm_ipc10
  python -m jaxcond.condense --config experiments/imagenet1k.py:method=ddm,ipc=10 --workdir runs/in1k_ddm_ipc10
  python -m jaxcond.condense --config experiments/imagenet1k.py:method=m3d,ipc=10 --workdir runs/in1k_m3d_ipc10
  128 px like DDM-2024's ImageNet option: add `--config.dataset.resolution=128 --config.model.name=convnetd5 --config.eval.model=convnetd5`.

Choices: resolution 64 with ConvNetD4 (feature dim 2048), the registry default; DM's and
DDM's ImageNet-1K settings are NOT FOUND (DDM-2024's code has a 128 px ImageNet option).
Memory: the uint8 class bank is 1000 × 1300 × 64·64·3 ≈ 16 GB, sharded over the class axis;
each step embeds 1000 × (batch_real + ipc) images.

Reported accuracies (%, methods.md §6): DM, M3D and DDM absolute ImageNet-1K numbers NOT
FOUND (the DDM abstract claims "+2.0% / +5% on ImageNet-1K" over the baselines).
"""
from jaxcond import configs


def get_config(arg=None):
  return configs.make_config("imagenet1k", arg, model="convnetd4")
