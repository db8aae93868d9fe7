"""Streaming path on a small ImageFolder tree written here: balance, determinism, sharding."""
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P
from PIL import Image

from jaxcond.data import (ArrayIndex, ClassStream, ImageFolderIndex, build_bank, get_info,
                          make_index, sample_real)
from jaxcond.errors import ConfigError, DataError

INFO = get_info("imagenette", resolution=8)
COUNTS = [4, 5, 6, 4, 7, 4, 5, 4, 6, 5]


@pytest.fixture
def tree(tmp_path, monkeypatch):
  """train/<wnid>/jjj.png, 12x10 constant color (20c, 10j + 5, 7): survives resizing exactly."""
  monkeypatch.setenv("JAXCOND_CACHE", str(tmp_path / "cache"))
  for c, n in enumerate(COUNTS):
    d = tmp_path / "imagenette" / "train" / INFO.class_names[c]
    d.mkdir(parents=True)
    for j in range(n):
      Image.fromarray(np.full((12, 10, 3), (20 * c, 10 * j + 5, 7), np.uint8)).save(d / f"{j:03d}.png")
  return tmp_path / "imagenette"


def _decode(batch):
  """-> class ids [C, B] and within-class file indices [C, B] from the pixel colors."""
  return batch[:, :, 0, 0, 0] // 20, (batch[:, :, 0, 0, 1].astype(int) - 5) // 10


def test_index_and_balanced_batches(tree):
  index = make_index("imagenette", "train", path=tree, resolution=8)
  assert isinstance(index, ImageFolderIndex) and index.counts.tolist() == COUNTS
  stream = ClassStream(index, batch=4, seed=0, num_steps=5, num_threads=2)
  steps = list(stream)
  assert [s for s, _ in steps] == [0, 1, 2, 3, 4]
  for step, arr in steps:
    assert arr.shape == (10, 4, 8, 8, 3) and arr.dtype == np.uint8
    cls, idx = _decode(np.asarray(arr))
    assert (cls == np.arange(10)[:, None]).all()                       # class purity
    for c in range(10):
      assert len(set(idx[c].tolist())) == 4 and idx[c].max() < COUNTS[c]   # no duplicates
    np.testing.assert_array_equal(np.asarray(arr), stream.batch_at(step))  # = synchronous read


def test_coverage_and_resume(tree):
  index = make_index("imagenette", "train", path=tree, resolution=8)
  first = ClassStream(index, batch=3, seed=5, num_steps=12, num_threads=2)
  batches = [np.asarray(a) for _, a in first]
  seen = [set() for _ in COUNTS]
  for b in batches:
    _, idx = _decode(b)
    for c in range(10):
      seen[c].update(idx[c].tolist())
  assert all(seen[c] == set(range(n)) for c, n in enumerate(COUNTS))
  resumed = ClassStream(index, batch=3, seed=5, start_step=7, num_steps=2, num_threads=2)
  got = [(s, np.asarray(a)) for s, a in resumed]
  assert [s for s, _ in got] == [7, 8]
  np.testing.assert_array_equal(got[0][1], batches[7])
  np.testing.assert_array_equal(got[1][1], batches[8])
  other = ClassStream(index, batch=3, seed=6, num_steps=1)
  assert not np.array_equal(other.batch_at(0), batches[0])


def test_sharded_prefetch_matches_unsharded(tree):
  index = make_index("imagenette", "train", path=tree, resolution=8)
  mesh = jax.make_mesh((8,), ("classes",))
  sharding = NamedSharding(mesh, P("classes"))
  stream = ClassStream(index, batch=4, seed=1, pad_to=16, sharding=sharding, num_steps=2,
                       prefetch=1, num_threads=2)
  plain = ClassStream(index, batch=4, seed=1, num_steps=2)
  for step, arr in stream:
    assert arr.shape == (16, 4, 8, 8, 3) and tuple(arr.sharding.spec)[0] == "classes"
    assert len(arr.addressable_shards) == 8 and arr.addressable_shards[0].data.shape[0] == 2
    host = np.asarray(arr)
    np.testing.assert_array_equal(host[:10], plain.batch_at(step))
    assert (host[10:] == 0).all()
  counts, ids = stream.device_fields()
  assert ids.tolist() == list(range(10)) + [-1] * 6 and counts.tolist() == COUNTS + [0] * 6


def test_same_contract_as_the_bank(tree):
  """The condense step sees the same shape, dtype and sharding from either path."""
  index = make_index("imagenette", "train", path=tree, resolution=8)
  x = np.stack([index.read(c, j) for c in range(10) for j in range(COUNTS[c])])
  y = np.repeat(np.arange(10), COUNTS)
  mesh = jax.make_mesh((8,), ("classes",))
  sharding = NamedSharding(mesh, P("classes"))
  bank = build_bank(x, y, 10, pad_to=16, sharding=sharding)
  from_bank = jax.jit(sample_real, static_argnums=2)(bank, jax.random.key(0), 4)
  stream = ClassStream(ArrayIndex(x, y, 10), batch=4, seed=0, pad_to=16, sharding=sharding,
                       num_steps=1)
  (_, from_stream), = list(stream)
  assert from_stream.shape == from_bank.shape and from_stream.dtype == from_bank.dtype
  assert from_stream.sharding.is_equivalent_to(from_bank.sharding, from_bank.ndim)
  cls_b, _ = _decode(np.asarray(from_bank)[:10])
  cls_s, _ = _decode(np.asarray(from_stream)[:10])
  np.testing.assert_array_equal(cls_b, cls_s)


def test_errors(tree):
  index = make_index("imagenette", "train", path=tree, resolution=8)
  with pytest.raises(ConfigError, match=r"batch_real: 5 exceeds class 0 \(4 images\)"):
    ClassStream(index, batch=5, seed=0)
  with pytest.raises(ConfigError, match="pad_to: 4 is smaller than the 10 classes"):
    ClassStream(index, batch=2, seed=0, pad_to=4)
  bad = tree / "train" / INFO.class_names[2] / "000.png"
  bad.write_bytes(b"garbage")
  stream = ClassStream(make_index("imagenette", "train", path=tree, resolution=8), batch=6,
                       seed=0, classes=[2], num_steps=1, num_threads=2)
  with pytest.raises(DataError, match=r"000.png: cannot decode image"):
    list(stream)


def test_class_subset_and_close(tree):
  index = make_index("imagenette", "train", path=tree, resolution=8)
  with ClassStream(index, batch=2, seed=0, classes=[9, 4], num_threads=2) as stream:
    it = iter(stream)
    for _ in range(3):
      step, arr = next(it)
      cls, _ = _decode(np.asarray(arr))
      assert (cls[0] == 9).all() and (cls[1] == 4).all()
  assert stream._thread is None                                         # prefetch thread ended


def test_make_index_arrays_for_file_formats(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXCOND_CACHE", str(tmp_path / "cache"))
  index = make_index("digits", "train")
  assert isinstance(index, ArrayIndex) and index.counts.sum() == 1442
  b = ClassStream(index, batch=8, seed=0).batch_at(3)
  assert b.shape == (10, 8, 8, 8, 1)
