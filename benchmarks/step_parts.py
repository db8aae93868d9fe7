"""Where the time of one condensation step goes: ablations and prototype fixes.

    PYTHONPATH=. python benchmarks/step_parts.py --method dm --ipc 10 [--parts a,b,...]

Workload: the PyTorch reference iteration (`jaxcond.bench --workload reference`), CIFAR-10
shapes, random data. Every part is a separately jitted function; all are compiled
first, then timed in --repeats rounds (each round runs every part once, in turn, so that
load from other processes hits all parts alike); median/min/max wall seconds and the
median CPU seconds of this process per call; compile excluded.
The real batch is sampled once outside the timed functions (sampling is ~ms).

Parts (`--parts`, default all):
  step                 the jaxcond step (`steps.make_step`), as `condense` runs it
  step_norm_none       ... with model.norm = none
  step_aug_none        ... with augmentation off
  step_aug_<op>        ... with the strategy reduced to one op (cost of one branch)
  real_fwd             real features only: normalise, DSA (vmap over classes), embed
  real_fwd_noaug       ... without DSA
  real_fwd_norm_none   ... without DSA and without norm
  aug_real             DSA of the real batch only (vmap over classes, all branches)
  syn_grad             the synthetic half: loss + gradient given fixed real features
  syn_grad_aug_none    ... without DSA
  proto_syn_grad_unified  ... with the unified DSA prototype
  net_init             drawing the random network
  proto_step_realmap<k>  the step with the real forward under lax.map over per-class
                       chunks of k images (C·k images per map iteration)
  proto_fwd            real forward through a hand-written ConvNet (same maths) with:
  proto_fwd_onepass      one-pass instance-norm statistics (E[x], E[x^2])
  proto_fwd_reshapepool  average pooling as reshape + mean instead of reduce_window
  proto_fwd_chunk<k>     lax.map over chunks of k images (cache-sized activations)
  proto_fwd_map<k>     lax.map over chunks of k images, same maths as net_fwd (k = 256 is
                       lax.map over the classes)
  proto_aug_unified_rows  ... with the 4 bilinear taps gathering contiguous rows
  proto_aug_unified    DSA of the real batch as ONE per-class bilinear resampling
                       (flip/crop/scale/rotate as affine maps) + per-class colour
                       coefficients + cutout mask: no branch is computed in vain
Prints one JSON line per part and a Markdown table.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from jaxcond import augment as aug_lib
from jaxcond import bench, benchlib, configs, data, nets, parallel, rng, steps
from jaxcond.data import registry

HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- prototypes

def proto_embed(params, x, *, onepass=False, reshape_pool=False, eps=1e-5, depth=3):
  """ConvNet-3 (instance norm, relu, avg pool) features, written out by hand."""
  for d in range(depth):
    p = params[f"Conv_{d}"]
    x = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["bias"]
    n = params[f"InstanceNorm_{d}"]
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    if onepass:
      var = jnp.maximum(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True)
                        - jnp.square(mean), 0.0)
      x = (x - mean) * (jax.lax.rsqrt(var + eps) * n["scale"]) + n["bias"]
    else:
      c = x - mean
      var = jnp.mean(jnp.square(c), axis=(1, 2), keepdims=True)
      x = c * jax.lax.rsqrt(var + eps) * n["scale"] + n["bias"]
    x = jax.nn.relu(x)
    b, h, w, ch = x.shape
    if reshape_pool:
      x = x.reshape(b, h // 2, 2, w // 2, 2, ch).mean(axis=(2, 4))
    else:
      x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1),
                                "VALID") / 4.0
  return x.reshape(x.shape[0], -1)


def _affine_sample_rows(x, theta):
  """`augment._affine_shared` with the spatial axis leading: x as [h·w, n·c] rows, so each
  of the 4 bilinear taps gathers whole contiguous rows of n·c floats (cheap on CPU),
  instead of n·h·w separate c-float slices."""
  n, h, w, c = x.shape
  rows = jnp.transpose(x, (1, 2, 0, 3)).reshape(h * w, n * c)
  out = jnp.zeros_like(rows)
  for idx, wgt in aug_lib.bilinear_taps(theta, h, w):
    out = out + jnp.take(rows, idx.reshape(-1), axis=0) * wgt.reshape(-1, 1)
  return jnp.transpose(out.reshape(h, w, n, c), (2, 0, 1, 3))


def unified_dsa(key, x, ops=aug_lib.parse_strategy(aug_lib.DEFAULT_STRATEGY),
                p=aug_lib.DSAParams(), rows=False):
  """Prototype: DM-policy siamese DSA of x [n, h, w, c] with ONE geometric resampling.

  Draws exactly what `augment(key, x, policy="dm")` draws (same op choice and
  parameters, via the module's own samplers), then expresses the chosen op as
  (theta, colour coefficients, cutout box): geometric ops -> theta (crop/flip are integer
  maps, so bilinear weights are exactly 0/1); colour -> (brightness, saturation,
  contrast) else the identity; cutout -> the box else an empty one. Cost: one 4-tap
  resampling + a few elementwise passes, whatever the op, also under vmap.
  """
  n, h, w, c = x.shape
  choice = aug_lib._choose(key, len(ops))           # pylint: disable=protected-access
  prm = {op: aug_lib._sample_op(op, key, (), (h, w), p) for op in ops}  # pylint: disable=protected-access
  is_op = {op: choice == i for i, op in enumerate(ops)}
  eye = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], jnp.float32)
  theta = eye
  if "flip" in ops:
    t = jnp.where(prm["flip"]["flip"], jnp.array([[-1.0, 0, 0], [0, 1.0, 0]]), eye)
    theta = jnp.where(is_op["flip"], t, theta)
  if "crop" in ops:     # out[i, j] = x[i + dy, j + dx]: translation by 2·d/size
    t = jnp.array([[1.0, 0, 0], [0, 1.0, 0]]).at[0, 2].set(2.0 * prm["crop"]["dx"] / w)
    t = t.at[1, 2].set(2.0 * prm["crop"]["dy"] / h)
    theta = jnp.where(is_op["crop"], t, theta)
  if "scale" in ops:
    t = aug_lib._scale_theta(prm["scale"]["sx"], prm["scale"]["sy"])  # pylint: disable=protected-access
    theta = jnp.where(is_op["scale"], t, theta)
  if "rotate" in ops:
    t = aug_lib._rotate_theta(prm["rotate"]["angle"])  # pylint: disable=protected-access
    theta = jnp.where(is_op["rotate"], t, theta)
  x = (_affine_sample_rows if rows else aug_lib._affine_shared)(x, theta)     # identity theta is an exact identity (weights 1/0)
  if "color" in ops:
    cp = prm["color"]
    y = x + (cp["brightness"] - 0.5) * p.brightness
    m = jnp.mean(y, axis=-1, keepdims=True)
    y = (y - m) * (cp["saturation"] * p.saturation) + m
    m = jnp.mean(y, axis=(1, 2, 3), keepdims=True)
    y = (y - m) * (cp["contrast"] + p.contrast) + m
    x = jnp.where(is_op["color"], y, x)
  if "cutout" in ops:
    cp = prm["cutout"]
    y0 = cp["oy"] - cp["side_h"] // 2
    x0 = cp["ox"] - cp["side_w"] // 2
    rows, cols = jnp.arange(h), jnp.arange(w)
    box = (((rows >= y0) & (rows < y0 + cp["side_h"]))[:, None]
           & ((cols >= x0) & (cols < x0 + cp["side_w"]))[None, :])
    x = jnp.where(is_op["cutout"] & box[None, :, :, None], 0.0, x)
  return x


def real_features_mapped(k, model, variables, real_u8, class_ids, step, s, sharding_fn=None):
  """Prototype of `steps.real_features` with the real forward under `lax.map` over
  per-class chunks: [C, B] images -> [B/k, C, k] -> one map iteration embeds C·k images,
  so the activations of a chunk stay in cache (CPU). The class axis stays leading
  inside each chunk, so a class-sharded batch maps without any resharding."""
  aug_keys = rng.class_keys(rng.step_key(s.seed, step, rng.AUG), steps._safe_ids(class_ids))  # pylint: disable=protected-access
  real = steps.normalize_real(real_u8, s)
  real = steps._augment(real, aug_keys, s)  # pylint: disable=protected-access
  c, b = real.shape[:2]
  assert b % k == 0, (b, k)
  chunks = jnp.swapaxes(real.reshape((c, b // k, k) + real.shape[2:]), 0, 1)

  def one(xc):   # [C, k, H, W, ch] -> [C, k, d]
    f = nets.embed(model, variables, xc.reshape((c * k,) + xc.shape[2:]), train=True)
    return f.reshape(c, k, -1)

  feats = jnp.swapaxes(jax.lax.map(one, chunks), 0, 1).reshape(c, b, -1)
  return jax.lax.stop_gradient((feats, None))


# ----------------------------------------------------------------------------- harness

def _settings(spec, method, ipc, sets=()):
  c = bench.build_config(spec, method=method, ipc=ipc, sets=sets, workload="reference")
  info = registry.get_info(c.dataset.name)
  return c, configs.step_settings(c, info)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--config", default="experiments/cifar10.py")
  ap.add_argument("--method", default="dm")
  ap.add_argument("--ipc", type=int, default=10)
  ap.add_argument("--set", action="append", default=[])
  ap.add_argument("--repeats", type=int, default=10)
  ap.add_argument("--parts", default="")
  ap.add_argument("--chunk", type=int, default=64)
  ap.add_argument("--step-map-chunks", default="4,8",
                  help="per-class chunk sizes k of the proto_step_realmap<k> parts")
  ap.add_argument("--map-chunks", default="32,64,128,256",
                  help="chunk sizes of the proto_fwd_map<k> parts")
  args = ap.parse_args(argv)

  config, s = _settings(args.config, args.method, args.ipc, args.set)
  model = steps.make_model(s)
  mesh = parallel.make_mesh(1)
  bank = bench.fake_bank(s.num_classes, s.num_classes, bench.fake_per_class(s, "real"),
                         s.image_shape, mesh)
  real_u8 = jax.jit(lambda b: data.sample_real(b, jax.random.key(1), s.batch_real))(bank)
  class_ids = jnp.arange(s.num_classes, dtype=jnp.int32)
  syn = jax.jit(steps.init_synthetic(s, "real", data.sample_real))(bank)
  state0 = steps.init_state(s, syn)
  variables = jax.jit(lambda: steps.random_net_variables(model, 0, s))()
  step0 = jnp.int32(3)

  def step_part(settings):
    m = steps.make_model(settings)
    f = jax.jit(steps.make_step(settings, None, m))
    return f, lambda: (state0, real_u8, class_ids, step0)

  def variant(**kw):
    return dataclasses.replace(s, **kw)

  parts = {}
  parts["step"] = step_part(s)
  norm_none = tuple(sorted({**dict(s.model_overrides), "norm": "none"}.items()))
  parts["step_norm_none"] = step_part(variant(model_overrides=norm_none))
  parts["step_aug_none"] = step_part(variant(aug_strategy="none"))
  for op in aug_lib.OPS:
    parts[f"step_aug_{op}"] = step_part(variant(aug_strategy=op))

  def step_realmap(k):
    """The full step with steps.real_features swapped for the mapped prototype (the
    module attribute is patched only while tracing)."""
    f = steps.make_step(s, None, model)

    def traced(*a):
      saved = steps.real_features
      steps.real_features = functools.partial(real_features_mapped, k)
      try:
        return f(*a)
      finally:
        steps.real_features = saved

    return jax.jit(traced), lambda: (state0, real_u8, class_ids, step0)

  for kk in [int(v) for v in args.step_map_chunks.split(",") if v]:
    parts[f"proto_step_realmap{kk}"] = step_realmap(kk)

  def real_fwd(settings):
    m = steps.make_model(settings)
    f = jax.jit(lambda v, r: steps.real_features(m, v, r, class_ids, step0, settings)[0])
    return f, lambda: (jax.jit(lambda: steps.random_net_variables(m, 0, settings))(), real_u8)

  parts["real_fwd"] = real_fwd(s)
  parts["real_fwd_noaug"] = real_fwd(variant(aug_strategy="none"))
  parts["real_fwd_norm_none"] = real_fwd(variant(aug_strategy="none",
                                                 model_overrides=norm_none))

  real_f32 = jax.jit(lambda r: steps.normalize_real(r, s))(real_u8)
  aug_keys = rng.class_keys(rng.step_key(s.seed, step0, rng.AUG), class_ids)
  parts["aug_real"] = (jax.jit(lambda k, x: steps._augment(x, k, s)),  # pylint: disable=protected-access
                       lambda: (aug_keys, real_f32))
  parts["proto_aug_unified"] = (jax.jit(jax.vmap(unified_dsa)), lambda: (aug_keys, real_f32))
  parts["proto_aug_unified_rows"] = (jax.jit(jax.vmap(functools.partial(unified_dsa, rows=True))),
                                     lambda: (aug_keys, real_f32))

  real_feats = parts["real_fwd"][0](*parts["real_fwd"][1]())

  def syn_grad(v, syn_x, rf):
    def loss(x):
      per_class, _ = steps.class_losses(model, v, x, rf, None, class_ids, step0, s)
      return jnp.sum(per_class)
    return jax.grad(loss)(syn_x)

  parts["syn_grad"] = (jax.jit(syn_grad), lambda: (variables, syn, real_feats))

  def syn_grad_with(aug_fn):
    def grad_fn(v, syn_x, rf):
      def loss(x):
        xx = steps.synthetic_batch(x, class_ids, step0, s)
        xx = aug_fn(aug_keys, xx)
        feats, _ = steps._embed(model, v, xx, s, None)  # pylint: disable=protected-access
        return jnp.sum(steps._objective_terms(rf, feats, None, None, s)[0])  # pylint: disable=protected-access
      return jax.grad(loss)(syn_x)
    return jax.jit(grad_fn)

  parts["syn_grad_aug_none"] = (syn_grad_with(lambda k, x: x), lambda: (variables, syn, real_feats))
  parts["proto_syn_grad_unified"] = (syn_grad_with(jax.vmap(unified_dsa)),
                                     lambda: (variables, syn, real_feats))
  parts["net_init"] = (jax.jit(lambda k: nets.init_variables(model, k, s.image_shape)),
                       lambda: (jax.random.key(5),))

  flat_real = real_f32.reshape((-1,) + real_f32.shape[2:])
  prm = variables["params"]
  parts["net_fwd"] = (jax.jit(lambda v, x: nets.embed(model, v, x, train=True)),
                      lambda: (variables, flat_real))
  parts["proto_fwd"] = (jax.jit(lambda p, x: proto_embed(p, x)), lambda: (prm, flat_real))
  parts["proto_fwd_onepass"] = (jax.jit(lambda p, x: proto_embed(p, x, onepass=True)),
                                lambda: (prm, flat_real))
  parts["proto_fwd_reshapepool"] = (
      jax.jit(lambda p, x: proto_embed(p, x, reshape_pool=True)), lambda: (prm, flat_real))
  k = args.chunk
  parts[f"proto_fwd_chunk{k}"] = (
      jax.jit(lambda p, x: jax.lax.map(lambda xc: proto_embed(p, xc, onepass=True,
                                                             reshape_pool=True),
                                       x.reshape((-1, k) + x.shape[1:])).reshape(
                                           x.shape[0], -1)),
      lambda: (prm, flat_real))

  def mapped(k, **kw):
    return jax.jit(lambda p, x: jax.lax.map(
        lambda xc: proto_embed(p, xc, **kw), x.reshape((-1, k) + x.shape[1:])).reshape(
            x.shape[0], -1))

  for kk in [int(v) for v in args.map_chunks.split(",") if v]:
    parts[f"proto_fwd_map{kk}"] = (mapped(kk), lambda: (prm, flat_real))

  # numerical checks of the prototypes against the library
  ref = parts["net_fwd"][0](variables, flat_real)
  checks = {name: float(jnp.max(jnp.abs(parts[name][0](prm, flat_real) - ref))
                        / (jnp.max(jnp.abs(ref)) + 1e-12))
            for name in ("proto_fwd", "proto_fwd_onepass", "proto_fwd_reshapepool",
                         f"proto_fwd_chunk{k}")}
  want = steps._augment(real_f32, aug_keys, s)  # pylint: disable=protected-access
  got = jax.vmap(unified_dsa)(aug_keys, real_f32)
  checks["proto_aug_unified"] = float(jnp.max(jnp.abs(got - want)))
  got = parts["proto_aug_unified_rows"][0](aug_keys, real_f32)
  checks["proto_aug_unified_rows"] = float(jnp.max(jnp.abs(got - want)))
  print(json.dumps({"prototype_max_rel_err": checks}), flush=True)

  chosen = [p for p in args.parts.split(",") if p] or list(parts)
  # Compile everything first, then time in rounds (every part once per round, in turn),
  # so that contention from other processes on a shared machine hits all parts alike.
  compiled, info = {}, {}
  for name in chosen:
    fn, args_fn = parts[name]
    exe, cst = benchlib.compile_stats(fn, *args_fn())
    compiled[name] = exe
    info[name] = cst
    for _ in range(2):
      benchlib.block(exe(*args_fn()))
  walls = {n: [] for n in chosen}
  cpus = {n: [] for n in chosen}
  for _ in range(args.repeats):
    for name in chosen:
      a = parts[name][1]()
      benchlib.block(a)
      c0 = time.process_time()
      t0 = time.perf_counter()
      benchlib.block(compiled[name](*a))
      walls[name].append(time.perf_counter() - t0)
      cpus[name].append(time.process_time() - c0)
  rows = []
  for name in chosen:
    cst = info[name]
    row = {"part": name, "median_s": statistics.median(walls[name]),
           "min_s": min(walls[name]), "max_s": max(walls[name]),
           "cpu_s": statistics.median(cpus[name]), "compile_s": cst["compile_s"],
           "gflops": (cst["flops"] / 1e9) if cst.get("flops") else None,
           "loadavg": round(os.getloadavg()[0], 2)}
    rows.append(row)
    print(json.dumps(row), flush=True)
  print(benchlib.markdown_table(rows, ["part", "median_s", "min_s", "max_s", "cpu_s",
                                       "compile_s", "gflops", "loadavg"]))


if __name__ == "__main__":
  sys.exit(main())
