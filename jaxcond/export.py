"""`python -m jaxcond.export WORKDIR --format imagefolder --out DIR` (or dcbench): a condensed set
in the formats other evaluation tools read.

imagefolder  `DIR/<NNN>_<class name>/<k>.png`, uint8 PNGs (de-normalised; multi-formation
             sets decoded: the images a network trains on). Folder names start with the
             zero-padded class index so torchvision's `ImageFolder`, which numbers classes
             in sorted folder order, gives every image its jaxcond label. DD-Ranking
             (arXiv 2505.13300) reads such a tree through its `image_path` option.
dcbench      `DIR/<method>_<dataset>_ipc<ipc>.npz` in the layout DC-BENCH (arXiv 2207.09639)
             reads KIP sets with: `images` float32 NHWC, `labels` one-hot float32 [N, C]
             (its loader takes argmax), plus `mean`, `std`, `class_names`. `images` are
             normalised with the set's own constants ((pixels/255 − mean)/std, the DC/DM
             constants DC-BENCH's non-KIP test loaders use); `--unit` writes [0, 1] pixels.

README.md ("Exports") gives the command each tool needs. Reads the set only through
`jaxcond.synthetic_io` (the synthetic.npz format).
"""
from __future__ import annotations

import os
import re
import sys
from typing import Sequence

import numpy as np

from jaxcond import cli, files, synthetic_io
from jaxcond.errors import ConfigError, DataError

FORMATS = ("imagefolder", "dcbench")


def _set_path(src) -> str:
  """WORKDIR or a synthetic.npz path -> the synthetic.npz path."""
  src = os.fspath(src)
  return files.join(src, "synthetic.npz") if files.isdir(src) else src


def class_folder(index: int, name: str, num_classes: int) -> str:
  """`003_cat`: sortable by index, safe on every file system."""
  width = max(2, len(str(num_classes - 1)))
  safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or str(index)
  return f"{index:0{width}d}" if safe == str(index) else f"{index:0{width}d}_{safe}"


def _check_out(out: str) -> None:
  if files.is_remote(out):
    if files.exists(out) and files.listdir(out):
      raise ConfigError(f"--out: {out} is not empty; pass a new or empty folder")
    return
  if os.path.exists(out) and not os.path.isdir(out):
    raise ConfigError(f"--out: {out} is a file, not a folder")
  if os.path.isdir(out) and os.listdir(out):
    raise ConfigError(f"--out: {out} is not empty; pass a new or empty folder")
  parent = os.path.dirname(os.path.abspath(out))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
    raise ConfigError(f"--out: cannot create {out} ({parent} is not a writable folder)")


def to_imagefolder(sset, out: str) -> list[str]:
  """Writes the PNG tree; returns the class folders in label order."""
  from PIL import Image  # pylint: disable=g-import-not-at-top  # Pillow: optional
  pixels = sset.pixels("train")
  folders = []
  for c, name in enumerate(sset.class_names):
    d = files.join(out, class_folder(c, name, sset.num_classes))
    files.makedirs(d)
    folders.append(d)
    for k, img in enumerate(pixels[sset.y == c]):
      with files.atomic_write(files.join(d, f"{k:05d}.png")) as f:
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(f, format="PNG")
  return folders


def to_dcbench(sset, out: str, *, unit: bool = False) -> str:
  """Writes the KIP-layout .npz (module doc); returns its path."""
  pixels = sset.pixels("train").astype(np.float32) / 255.0
  if unit:
    images = pixels
  else:
    images = (pixels - np.asarray(sset.mean, np.float32)) / np.asarray(sset.std, np.float32)
  labels = np.eye(sset.num_classes, dtype=np.float32)[sset.y]
  files.makedirs(out)
  name = f"{sset.method or 'set'}_{sset.dataset or 'data'}_ipc{sset.ipc}.npz"
  path = files.join(out, name)
  return files.write_npz(
      path, images=images.astype(np.float32), labels=labels,
      mean=np.asarray(sset.mean if not unit else [0.0] * len(sset.mean), np.float32),
      std=np.asarray(sset.std if not unit else [1.0] * len(sset.std), np.float32),
      class_names=np.asarray(sset.class_names, dtype=np.str_))


def export(src, fmt: str, out, *, unit: bool = False) -> str:
  """Exports the set in WORKDIR (or a synthetic.npz) as `fmt` under `out`; returns what
  was written (the folder, or the .npz path). One-line errors before anything is written."""
  if fmt not in FORMATS:
    raise ConfigError(f"--format: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
  if unit and fmt != "dcbench":
    raise ConfigError("--unit: only for --format dcbench (imagefolder PNGs are uint8 pixels)")
  src_path = _set_path(src)
  if not files.exists(src_path):
    raise DataError(f"{src_path}: no synthetic set here (expected a jaxcond.condense "
                    "workdir holding synthetic.npz, or the .npz itself)")
  out = os.fspath(out)
  _check_out(out)
  sset = synthetic_io.load(src_path)
  if fmt == "imagefolder":
    to_imagefolder(sset, out)
    return out
  return to_dcbench(sset, out, unit=unit)


PROGRAM = cli.Program(
    "export", "Export a condensed set for other tools (README.md, 'Exports').",
    examples=("python -m jaxcond.export runs/c10 --format imagefolder --out exports/c10",
              "python -m jaxcond.export runs/c10/synthetic.npz --format dcbench --out "
              "exports/dcbench"),
    flags=(cli.flag("format", "imagefolder (PNG tree) or dcbench (KIP-style .npz)",
                    required=True, choices=FORMATS),
           cli.flag("out", "new or empty output folder", required=True, metavar="DIR"),
           cli.flag("unit", "dcbench: images in [0, 1] instead of mean/std-normalised",
                    action="store_true")),
    config="none", workdir="positional",
    workdir_help="a jaxcond run's --workdir, or a synthetic.npz")


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m jaxcond.export WORKDIR --format F --out DIR` (argv sys.argv-style); exit
  status as `jaxcond.cli`."""
  def go(a):
    f = a.flags
    print(f"export ({f.format}): {export(a.workdir, f.format, f.out, unit=f.unit)}")
  return cli.main(PROGRAM, go, argv)


if __name__ == "__main__":
  sys.exit(main())
