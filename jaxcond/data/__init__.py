"""Real data for condensation (papers' datasets): registry, file/TFDS readers, device bank, stream.

Two paths deliver the same thing, uint8 real batches `[C, batch_real, H, W, ch]` with the
class axis sharded over the mesh:
- `build_bank` + `sample_real`: the whole training set on device, sampled inside jit;
- `ClassStream`: a grain pipeline with device prefetch, for sets that do not fit.
`normalize` turns either into float32 model input inside the step. See docs/data.md.

Importing this package pulls in numpy and jax only; TFDS, grain, scipy and scikit-learn
load when a function needs them.
"""
import numpy as np

from jaxcond.data import registry
from jaxcond.data.bank import (ClassBank, build_bank, check_batch, local_class_slots,
                               normalize, sample_real)
from jaxcond.data.load import (SOURCES, data_roots, dataset_identity, load_split,
                                 resolve_source, split_loader)
from jaxcond.data.registry import (DATASET_NAMES, DatasetInfo, bank_nbytes, get_info,
                                   padded_slots)
from jaxcond.data.stream import ArrayIndex, ClassStream, ImageFolderIndex, TFDSIndex, make_index


def load_bank(name: str, split: str = "train", *, source: str = "auto", path=None,
              resolution=None, sharding=None, max_per_class=None, class_list=None,
              cache: bool = True, draft: bool = True):
  """Load only this host's classes and build the (sharded) bank -> (ClassBank, DatasetInfo).

  With `sharding` the class axis is padded to a multiple of its mesh axis size (dummy
  classes: count 0, class_id -1) and each process reads only the classes of its slots.
  """
  info = get_info(name, resolution=resolution, class_list=class_list)
  slots, classes = info.num_classes, None
  if sharding is not None:
    axis = tuple(sharding.spec)[0] if tuple(sharding.spec) else None
    names = axis if isinstance(axis, tuple) else ((axis,) if axis else ())
    n_dev = 1
    for a in names:
      n_dev *= sharding.mesh.shape[a]
    slots = padded_slots(info.num_classes, n_dev)
    local = local_class_slots(sharding, slots)
    classes = [int(s) for s in local if s < info.num_classes]
  if classes == []:  # this process holds only dummy slots
    x, y = np.zeros((0,) + tuple(info.image_shape), np.uint8), np.zeros((0,), np.int32)
  else:
    x, y = load_split(info.name, split, source=source, path=path, resolution=resolution,
                      classes=classes, cache=cache, class_list=class_list, draft=draft)
  bank = build_bank(x, y, info.num_classes, pad_to=slots, sharding=sharding,
                    max_per_class=max_per_class)
  return bank, info


__all__ = [
    "ArrayIndex", "ClassBank", "ClassStream", "DATASET_NAMES", "DatasetInfo",
    "ImageFolderIndex", "SOURCES", "TFDSIndex", "bank_nbytes", "build_bank", "check_batch",
    "data_roots", "dataset_identity", "get_info", "load_bank", "load_split",
    "local_class_slots", "make_index", "normalize", "padded_slots", "registry",
    "resolve_source", "sample_real", "split_loader",
]
