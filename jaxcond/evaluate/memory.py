"""How much device memory an evaluation needs, from shapes only (no data, no device).

The accelerator program (`execution`, loop="device") keeps the training set on the device
and trains in `lax.scan` over batches, so its temporaries are one batch's activations and
gradients per network: they do not grow with the number of training images. This module
compiles that program on `jax.ShapeDtypeStruct`s and reads XLA's `memory_analysis()`, as
condensation's `--plan` does for its step; docs/evaluate.md quotes the ImageNet-1K figure:

    python -m jaxcond.evaluate.memory --dataset imagenet1k --ipc 50 --model resnet18
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import jax
import jax.numpy as jnp

from jaxcond.data import registry
from jaxcond.evaluate.execution import Layout, _programs, net_keys
from jaxcond.evaluate.protocols import PROTOCOLS, EvalSettings
from jaxcond.evaluate.train import registry_net


def plan(settings: EvalSettings, *, num_classes: int, image_shape, num_train: int,
         model: str | None = None, num_nets: int = 1, vectorize: str = "vmap") -> dict:
  """Bytes of the device-loop training program for `num_nets` networks on `num_train`
  images of `image_shape` (one device): `training_set_bytes` (the float32 set, an
  argument), `state_bytes` (params + momentum [+ BN stats]), `temp_bytes` (XLA's
  temporaries: batch activations and gradients), `total_bytes` (arguments + temporaries;
  outputs alias the donated state), and the compile time."""
  model = model or settings.model
  image_shape = tuple(int(s) for s in image_shape)
  net = registry_net(model, num_classes=num_classes, image_shape=image_shape)
  settings = dataclasses.replace(settings, num_nets=num_nets)
  prog = _programs(net, settings, False, Layout(), vectorize, int(num_train))
  keys = net_keys(settings.seed, range(num_nets))
  states = jax.eval_shape(prog["init"], keys)
  x = jax.ShapeDtypeStruct((num_train,) + image_shape, jnp.float32)
  y = jax.ShapeDtypeStruct((num_train,), jnp.int32)
  i32 = jax.ShapeDtypeStruct((), jnp.int32)
  t0 = time.perf_counter()
  compiled = prog["train"].lower(states, keys, x, y, i32, i32).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  state_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(states))
  return {"model": model, "num_classes": num_classes, "image_shape": list(image_shape),
          "num_train": int(num_train), "batch_size": settings.batch_size,
          "num_nets": num_nets, "training_set_bytes": int(x.size * 4 + y.size * 4),
          "state_bytes": int(state_bytes), "argument_bytes": int(mem.argument_size_in_bytes),
          "temp_bytes": int(mem.temp_size_in_bytes),
          "total_bytes": int(mem.argument_size_in_bytes + mem.temp_size_in_bytes),
          "compile_s": compile_s, "backend": jax.default_backend()}


def main(argv=None) -> int:
  """Prints the plan of one evaluation (the last line is JSON)."""
  p = argparse.ArgumentParser(prog="python -m jaxcond.evaluate.memory",
                              description="Device memory of the evaluation training program "
                                          "from shapes only.")
  p.add_argument("--dataset", default="imagenet1k")
  p.add_argument("--resolution", type=int, default=0, help="0 = the registry default")
  p.add_argument("--ipc", type=int, default=50)
  p.add_argument("--model", default="resnet18")
  p.add_argument("--protocol", default="dm", choices=PROTOCOLS)
  p.add_argument("--nets", type=int, default=1, help="networks trained together")
  args = p.parse_args(argv)
  info = registry.get_info(args.dataset, resolution=args.resolution or None)
  settings = EvalSettings.for_protocol(args.protocol, dataset=info.name, model=args.model)
  n = info.num_classes * args.ipc
  out = plan(settings, num_classes=info.num_classes, image_shape=info.image_shape,
             num_train=n, num_nets=args.nets)
  gib = 2.0 ** 30
  print(f"{args.model} x{args.nets} on {n} images {tuple(info.image_shape)} "
        f"({info.num_classes} classes), batch {settings.batch_size}: training set "
        f"{out['training_set_bytes'] / gib:.2f} GiB, state {out['state_bytes'] / gib:.3f} GiB, "
        f"temporaries {out['temp_bytes'] / gib:.2f} GiB, total {out['total_bytes'] / gib:.2f} "
        f"GiB (compile {out['compile_s']:.1f} s, {out['backend']})")
  print(json.dumps(out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
