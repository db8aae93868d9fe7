"""JPEG decode speed of a first ImageNet-1K run: images/s per core, draft mode on and off.

Makes (once, under --tree) an ImageFolder tree `train/<wnid>/<wnid>_<i>.JPEG` of ImageNet-like
JPEGs: 500x375, quality 90, 4:2:0 (Pillow's default), a smooth colour field plus grey texture
at 4 and 2 px and sensor noise, with a few hard-edged shapes, about 95 KiB each (ImageNet's
train JPEGs average about 110 KB). Then decodes them the way `load_split` does
(`readers.decode_many`: open, optional draft, RGB, Resize + CenterCrop) for each --sizes:

- per core: 1 thread, images/s, the median of --repeats passes after one warm-up pass
  (which also fills the page cache, so disk speed is not measured);
- all threads: `readers.decode_threads()` threads (the CPUs this process may use), same;
- python_us: per-image time of the same path on a 16x16 JPEG, where the C work is
  negligible: about the part of each decode that holds the GIL, so threads cannot decode
  more than 1e6 / python_us images/s, however many cores;
- pixels: draft vs full decode of every image (mean |diff|, max, 99.9th percentile), and of
  crops of scikit-learn's two sample photos re-encoded at 500x375 q90 (real photo content).

Projection for ImageNet-1K's 1,281,167 training images on 8, 32 and 96 cores:
`max(N / (cores x per-core rate), N x python_us)`: linear in cores until the GIL ceiling.

    PYTHONPATH=. python benchmarks/decode.py                       # 3000 images, 64 and 128 px
    PYTHONPATH=. python benchmarks/decode.py --images 300 --repeats 1 --sizes 64   # a quick check
    PYTHONPATH=. python benchmarks/decode.py --pixels-only --images 1000 --sizes 32,64,128,224
Prints a table, then one JSON object (also written to --json if given).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

try:
  from jaxcond.data import readers
  from jaxcond.data.imagenet_wnids import IMAGENET_WNIDS
except ImportError:   # running from a source checkout without `pip install -e .`
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
  from jaxcond.data import readers
  from jaxcond.data.imagenet_wnids import IMAGENET_WNIDS

IMAGENET_TRAIN = 1281167
CORES = (8, 32, 96)


def _upsampled_noise(rng, h, w, scale, amp, ch):
  from PIL import Image  # heavy, optional at import time
  small = rng.normal(128, amp, (h // scale + 3, w // scale + 3, ch)).clip(0, 255)
  small = small.astype(np.uint8)[..., 0] if ch == 1 else small.astype(np.uint8)
  up = Image.fromarray(small).resize((small.shape[1] * scale, small.shape[0] * scale),
                                     Image.BICUBIC)
  a = np.asarray(up, np.float32)[scale:scale + h, scale:scale + w] - 128
  return a[..., None] if ch == 1 else a


def photo_like(seed: int, w: int = 500, h: int = 375, quality: int = 90) -> bytes:
  """A JPEG that compresses like a photo: smooth chroma, detailed luma, edges, noise."""
  from PIL import Image, ImageDraw
  rng = np.random.default_rng(seed)
  img = rng.uniform(60, 190, 3).astype(np.float32)
  img = img + _upsampled_noise(rng, h, w, 64, 45.0, 3) + _upsampled_noise(rng, h, w, 16, 25.0, 3)
  img = img + _upsampled_noise(rng, h, w, 4, 34.0, 1) + _upsampled_noise(rng, h, w, 2, 34.0, 1)
  pil = Image.fromarray(img.clip(0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(pil)
  for _ in range(rng.integers(3, 9)):
    x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
    box = (x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 150)))
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
  a = np.asarray(pil, np.float32) + rng.normal(0, 7, (h, w, 1))
  buf = io.BytesIO()
  Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def make_tree(root: pathlib.Path, images: int, classes: int) -> list:
  """The tree's files (made once; reused when it already holds `images` JPEGs)."""
  train = root / "train"
  files = sorted(train.glob("*/*.JPEG")) if train.is_dir() else []
  if len(files) == images:
    return files
  wnids = IMAGENET_WNIDS[:classes]
  jobs = [(train / wnids[i % classes] / f"{wnids[i % classes]}_{i}.JPEG", i)
          for i in range(images)]
  for w in wnids:
    (train / w).mkdir(parents=True, exist_ok=True)

  def write(job):
    job[0].write_bytes(photo_like(job[1]))

  with concurrent.futures.ThreadPoolExecutor(readers.decode_threads()) as pool:
    list(pool.map(write, jobs))
  return sorted(p for p, _ in jobs)


def rate(files, size: int, draft: bool, threads: int, repeats: int) -> dict:
  """images/s of `decode_many` over all files: median of `repeats` after a warm-up pass."""
  wheres = [str(f) for f in files]
  readers.decode_many(files, wheres, size, 3, num_threads=threads, draft=draft)   # warm-up
  runs = []
  for _ in range(repeats):
    start = time.perf_counter()
    readers.decode_many(files, wheres, size, 3, num_threads=threads, draft=draft)
    runs.append(len(files) / (time.perf_counter() - start))
  return {"size": size, "draft": draft, "threads": threads,
          "images_per_s": statistics.median(runs), "runs": [round(r, 1) for r in runs]}


def python_overhead_us(repeats: int) -> float:
  """Per-image time on tiny JPEGs: the decode path with negligible C work, about the part
  of each decode that holds the GIL."""
  from PIL import Image
  blobs = []
  for i in range(500):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16, 3), np.uint8)).save(
        buf, format="JPEG", quality=90)
    blobs.append(buf.getvalue())
  wheres = [str(i) for i in range(len(blobs))]
  times = []
  for _ in range(max(3, repeats)):
    start = time.perf_counter()
    readers.decode_many(blobs, wheres, 8, 3, num_threads=1)
    times.append((time.perf_counter() - start) / len(blobs) * 1e6)
  return min(times)


def _diff(a: np.ndarray, b: np.ndarray) -> dict:
  d = np.abs(a.astype(np.int16) - b.astype(np.int16))
  return {"mean_abs": round(float(d.mean()), 3), "max": int(d.max()),
          "p99_9": float(np.percentile(d, 99.9)), "images": len(a)}


def sample_photos(n: int) -> list:
  """Crops of scikit-learn's two bundled photos (china.jpg, flower.jpg, 640x427) resized to
  500x375 and re-encoded at quality 90: real photo content, no download."""
  try:
    from sklearn.datasets import load_sample_images
  except ImportError:
    return []
  from PIL import Image
  photos = load_sample_images().images
  out = []
  for i in range(n):
    rng = np.random.default_rng(i)
    p = photos[i % len(photos)]
    s = rng.uniform(0.6, 1.0)
    cw, ch = int(p.shape[1] * s), int(p.shape[0] * s)
    x0, y0 = int(rng.integers(0, p.shape[1] - cw + 1)), int(rng.integers(0, p.shape[0] - ch + 1))
    im = Image.fromarray(p[y0:y0 + ch, x0:x0 + cw]).resize((500, 375), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    out.append(buf.getvalue())
  return out


def pixel_differences(files, sizes) -> dict:
  out = {}
  photos = sample_photos(200)
  for size in sizes:
    wheres = [str(f) for f in files]
    full = readers.decode_many(files, wheres, size, 3, draft=False)
    draft = readers.decode_many(files, wheres, size, 3, draft=True)
    out[f"generated_{size}"] = _diff(draft, full)
    if photos:
      pw = [f"photo {i}" for i in range(len(photos))]
      out[f"sklearn_photos_{size}"] = _diff(readers.decode_many(photos, pw, size, 3, draft=True),
                                            readers.decode_many(photos, pw, size, 3, draft=False))
  return out


def projection(per_core: float, overhead_us: float) -> dict:
  out = {}
  for cores in CORES:
    linear = IMAGENET_TRAIN / (cores * per_core)
    ceiling = IMAGENET_TRAIN * overhead_us * 1e-6
    out[str(cores)] = {"linear_s": round(linear, 1), "gil_ceiling_s": round(ceiling, 1),
                       "projected_s": round(max(linear, ceiling), 1)}
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=3000)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--sizes", default="64,128")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--threads", default="",
                      help="comma-separated thread counts to time besides 1 (default: all CPUs)")
  parser.add_argument("--tree", default=str(pathlib.Path(tempfile.gettempdir()) /
                                            "jaxcond_decode_bench"))
  parser.add_argument("--json", default="")
  parser.add_argument("--no-pixels", action="store_true")
  parser.add_argument("--pixels-only", action="store_true",
                      help="only the draft-vs-full pixel comparison (no timing)")
  args = parser.parse_args(argv)

  from PIL import __version__ as pillow_version
  sizes = [int(s) for s in args.sizes.split(",") if s]
  all_threads = readers.decode_threads()
  thread_counts = sorted({1, *(int(t) for t in args.threads.split(",") if t)} |
                         ({all_threads} if not args.threads else set()))
  t0 = time.perf_counter()
  files = make_tree(pathlib.Path(args.tree), args.images, args.classes)
  made_s = time.perf_counter() - t0
  if args.pixels_only:
    pixels = pixel_differences(files, sizes)
    print(json.dumps(pixels, indent=1))
    return pixels
  kib = statistics.mean(f.stat().st_size for f in files) / 1024
  results = [rate(files, size, draft, t, args.repeats)
             for size in sizes for draft in (False, True) for t in thread_counts]
  overhead = python_overhead_us(args.repeats)
  per_core = {f"{r['size']}_{'draft' if r['draft'] else 'full'}": r["images_per_s"]
              for r in results if r["threads"] == 1}
  result = {
      "host": {"cpus_usable": all_threads, "cpu_count": os.cpu_count(),
               "load_average_1min": round(os.getloadavg()[0], 2),
               "processor": platform.processor() or platform.machine(),
               "python": platform.python_version(), "pillow": pillow_version},
      "tree": {"path": args.tree, "images": len(files), "mean_kib": round(kib, 1),
               "seconds_to_make": round(made_s, 1)},
      "results": results, "per_core_images_per_s": per_core,
      "python_us_per_image": round(overhead, 1),
      "projection_imagenet1k_train": {k: projection(v, overhead) for k, v in per_core.items()},
  }
  if not args.no_pixels:
    result["pixels_draft_vs_full"] = pixel_differences(files, sizes)

  print(f"{len(files)} JPEGs, 500x375 q90, {kib:.0f} KiB mean; host: {all_threads} usable CPUs, "
        f"load {result['host']['load_average_1min']}")
  print(f"{'size':>5} {'draft':>6} {'threads':>7} {'images/s':>10} {'per thread':>10}")
  for r in results:
    print(f"{r['size']:>5} {str(r['draft']):>6} {r['threads']:>7} {r['images_per_s']:>10.0f} "
          f"{r['images_per_s'] / r['threads']:>10.0f}")
  print(f"GIL-held part about {overhead:.0f} us/image: threads top out near "
        f"{1e6 / overhead:,.0f} images/s")
  for key, proj in result["projection_imagenet1k_train"].items():
    cells = ", ".join(f"{c} cores {v['projected_s'] / 60:.1f} min" for c, v in proj.items())
    print(f"ImageNet-1K train ({key}): {cells}")
  for key, d in result.get("pixels_draft_vs_full", {}).items():
    print(f"pixels {key}: mean |diff| {d['mean_abs']}, max {d['max']}, "
          f"99.9th pct {d['p99_9']} ({d['images']} images)")
  text = json.dumps(result, indent=1)
  print(text)
  if args.json:
    pathlib.Path(args.json).write_text(text + "\n")
  return result


if __name__ == "__main__":
  main()
