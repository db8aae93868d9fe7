"""TensorBoard event files: the live view of a run, beside report.html (the summary).

With `--config.tensorboard=True`, `condense`, `pool`, `continual` and `nas` write event
files under `WORKDIR/tensorboard/`: the scalars they already log (each objective term, step
time, images/s, in-loop accuracy) and the synthetic grid at each checkpoint. They pass the
same records they write to `metrics.jsonl` / `eval.jsonl` and the PNG they write to
`images/`, so TensorBoard and the report show the same values and nothing is computed twice.

The writer is tensorboardX (`pip install jaxcond[tensorboard]`): a small, maintained
package that writes TensorBoard's own event format without TensorFlow (or PyTorch), and
whose file writer runs on a background thread, so a log call only queues a record (no
measurable step-time cost: docs/benchmarks.md "TensorBoard"). Point TensorBoard at the folder:
`tensorboard --logdir WORKDIR/tensorboard` (or at a parent folder to compare runs).
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from jaxcond.errors import ConfigError

SUBDIR = "tensorboard"
INSTALL_HINT = "pip install 'jaxcond[tensorboard]' (tensorboardX, no TensorFlow needed)"


def require():
  """The writer's package (tensorboardX), or a one-line ConfigError when it is not
  installed: programs call it before any work."""
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top  (optional extra)
  except ImportError:
    raise ConfigError(f"tensorboard: the writer is not installed; {INSTALL_HINT}, or set "
                      "tensorboard=False") from None
  return tensorboardX


class Writer:
  """Scalars and images for TensorBoard; every method is a no-op when disabled (the
  default, and on processes other than the first)."""

  def __init__(self, logdir: str | os.PathLike | None, *, enabled: bool = True,
               flush_secs: int = 10):
    self.logdir = None if logdir is None else os.fspath(logdir)
    self._w = None
    if enabled and self.logdir is not None:
      self._w = require().SummaryWriter(self.logdir, flush_secs=flush_secs)

  @property
  def enabled(self) -> bool:
    return self._w is not None

  def scalars(self, step: int, values: Mapping[str, float], *, prefix: str = "") -> None:
    """One scalar per finite number in `values` (other entries, e.g. names, are skipped)."""
    if self._w is None:
      return
    for k, v in values.items():
      if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
        continue
      if np.isfinite(v):
        self._w.add_scalar(f"{prefix}{k}", float(v), int(step))

  def image(self, tag: str, step: int, pixels: np.ndarray) -> None:
    """A uint8 HxWxC (or HxW) image, e.g. a PNG grid read back from disk."""
    if self._w is None:
      return
    a = np.asarray(pixels)
    if a.ndim == 2:
      a = a[..., None]
    self._w.add_image(tag, a[..., :3] if a.shape[-1] >= 3 else a, int(step),
                      dataformats="HWC")

  def png(self, tag: str, step: int, path: str | os.PathLike) -> None:
    """The PNG at `path` (what the run just wrote) as an image."""
    if self._w is None:
      return
    from PIL import Image  # pylint: disable=g-import-not-at-top  (image files only)
    with Image.open(path) as im:
      self.image(tag, step, np.asarray(im.convert("RGB")))

  def flush(self) -> None:
    if self._w is not None:
      self._w.flush()

  def close(self) -> None:
    if self._w is not None:
      self._w.close()
      self._w = None


def for_workdir(workdir: str | os.PathLike, enabled: bool, *, is_main: bool = True) -> Writer:
  """The writer of a run: `WORKDIR/tensorboard/` when `enabled` on the first process."""
  on = bool(enabled) and is_main
  return Writer(os.path.join(os.fspath(workdir), SUBDIR) if on else None, enabled=on)
