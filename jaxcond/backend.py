"""Every CPU-versus-accelerator decision in one place, as plain values.

jaxcond runs the same maths everywhere; what differs between a 2-core CPU and a TPU/GPU is
*how* it is executed (chunk sizes, loop shapes, a CPU-only convolution gradient). Those
choices are made here and nowhere else, so that a test can force the accelerator policy on
CPU (`force("accelerator")`) and no branch is reachable only on a GPU.

The policy is "cpu" when the default JAX backend is the host CPU, else "accelerator". It can
be overridden with `force(...)` (a context manager, for tests) or the environment variable
`JAXCOND_BACKEND_POLICY=cpu|accelerator` (read once per call, for command lines).
"""
from __future__ import annotations

import contextlib
import os

import jax

from jaxcond.errors import ConfigError

POLICIES = ("cpu", "accelerator")
_forced: list[str] = []


def platform() -> str:
  """The default JAX backend's platform name: "cpu", "gpu" (CUDA/ROCm) or "tpu"."""
  return jax.default_backend()


def policy() -> str:
  """"cpu" or "accelerator": which execution choices to make (module docstring)."""
  if _forced:
    return _forced[-1]
  env = os.environ.get("JAXCOND_BACKEND_POLICY", "").strip().lower()
  if env:
    if env not in POLICIES:
      raise ConfigError(f"JAXCOND_BACKEND_POLICY: unknown value {env!r} (choose from "
                        f"{', '.join(POLICIES)})")
    return env
  return "cpu" if platform() == "cpu" else "accelerator"


def is_cpu() -> bool:
  return policy() == "cpu"


@contextlib.contextmanager
def force(which: str):
  """Makes `policy()` return `which` inside the block (tests exercise accelerator paths on
  CPU with it). Decisions are read when programs are built, so build inside the block."""
  if which not in POLICIES:
    raise ValueError(f"policy must be one of {POLICIES}, got {which!r}")
  _forced.append(which)
  try:
    yield
  finally:
    _forced.pop()


def device_memory_bytes(device=None) -> int | None:
  """What one device may hold: `memory_stats()["bytes_limit"]` on GPU/TPU, the host's
  physical memory on CPU (all fake CPU devices share it), None when unknown."""
  device = device if device is not None else jax.local_devices()[0]
  if device.platform != "cpu":
    try:
      stats = device.memory_stats() or {}
    except Exception:  # pylint: disable=broad-except  (backends without memory_stats)
      stats = {}
    limit = stats.get("bytes_limit")
    return int(limit) if limit else None
  try:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
  except (ValueError, OSError, AttributeError):
    return None


def conv_grad_as_matmul() -> bool:
  """Whether nets take the convolution kernel gradient as explicit matmuls (custom_vjp):
  XLA:CPU runs the stock kernel-gradient convolution far slower (docs/benchmarks.md);
  accelerators keep the stock gradient."""
  return is_cpu()


def eval_execution() -> tuple[str, str]:
  """(loop, vectorize) for training evaluation networks: one jitted program with the nets
  vmapped on accelerators; a host loop with the nets unrolled on CPU, where XLA:CPU runs
  weight gradients inside loops and grouped convolutions much slower (jax#12868)."""
  return ("host", "unroll") if is_cpu() else ("device", "vmap")
