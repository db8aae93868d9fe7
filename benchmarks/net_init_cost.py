"""Is drawing a fresh random net every iteration cheap? (methods.md §1.2, §9.1)

DM / DDM embed with a new randomly initialised ConvNet at every iteration, M3D every
`ipm` iterations. This measures, for one net (default ConvNet-3 on CIFAR shapes):

- `init`: jitted `nets.init_variables(model, key, shape)` with the key as the only
  traced input (a new key every call);
- `forward`: jitted `nets.embed` of a real batch of C x B images (default 10 x 256 =
  2560, classes folded into the batch axis, as the DM step does);
- `init_and_forward`: both in one jitted function (the in-step cost of a fresh net).

Compile times are reported separately from run times; run times are the median (and
min / max) of `--repeats` calls after `--warmup` calls, each ended by
`block_until_ready`. Prints one JSON object.

    python benchmarks/net_init_cost.py                    # defaults of the brief
    python benchmarks/net_init_cost.py --repeats 20 --model convnet_bn
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

try:
  from jaxcond import nets
except ImportError:   # running from a source checkout without `pip install -e .`
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
  from jaxcond import nets


def _time_calls(fn, args_per_call, warmup):
  """Seconds per call for each of args_per_call, after `warmup` untimed calls."""
  for args in args_per_call[:warmup]:
    jax.block_until_ready(fn(*args))
  times = []
  for args in args_per_call[warmup:]:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return times


def _compile(fn, *args):
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - start


def _summary(times):
  return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
          "max_ms": 1e3 * max(times), "repeats": len(times)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="convnet")
  parser.add_argument("--image-shape", default="32,32,3")
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--per-class", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  args = parser.parse_args(argv)

  shape = tuple(int(s) for s in args.image_shape.split(","))
  batch = args.classes * args.per_class
  model = nets.get_model(args.model, num_classes=args.classes, image_shape=shape)
  n_calls = args.warmup + args.repeats
  keys = [jax.random.key(i) for i in range(n_calls)]
  images = jnp.asarray(np.random.default_rng(0).standard_normal((batch, *shape)),
                       jnp.float32)

  def init(key):
    return nets.init_variables(model, key, shape)

  def forward(variables, x):
    return nets.embed(model, variables, x, train=True)

  def init_and_forward(key, x):
    return forward(init(key), x)

  init_c, init_compile = _compile(init, keys[0])
  variables = init_c(keys[0])
  forward_c, forward_compile = _compile(forward, variables, images)
  both_c, both_compile = _compile(init_and_forward, keys[0], images)

  init_times = _time_calls(init_c, [(k,) for k in keys], args.warmup)
  forward_times = _time_calls(forward_c, [(variables, images)] * n_calls, args.warmup)
  both_times = _time_calls(both_c, [(k, images) for k in keys], args.warmup)

  num_params = sum(x.size for x in jax.tree.leaves(variables["params"]))
  result = {
      "model": args.model, "image_shape": list(shape), "forward_batch": batch,
      "num_params": int(num_params),
      "feature_dim": nets.feature_dim(model, shape),
      "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
      "num_devices": jax.device_count(), "cpu_count": os.cpu_count(),
      "load_average_1min": os.getloadavg()[0], "jax": jax.__version__,
      "python": platform.python_version(),
      "compile_s": {"init": init_compile, "forward": forward_compile,
                    "init_and_forward": both_compile},
      "init": _summary(init_times), "forward": _summary(forward_times),
      "init_and_forward": _summary(both_times),
  }
  result["init_over_forward"] = (result["init"]["median_ms"]
                                 / result["forward"]["median_ms"])
  print(json.dumps(result, indent=2))
  return result


if __name__ == "__main__":
  main()
