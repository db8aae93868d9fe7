"""Timing primitives shared by `jaxcond.bench` and the benchmark scripts.

Rules (docs/benchmarks.md): compile time is reported separately from run time, warm-up
calls are excluded, the statistic is the median of >= 10 repeats with min/max beside it,
and every timed call ends in `block_until_ready`.

On a shared machine a timing is only as good as the machine's quietness: `time_steps`
also records how many cores *other* processes used while each call ran (Linux
/proc/stat), and `machine_info` the load average, so contended runs can be recognised.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np


def block(tree: Any) -> Any:
  return jax.block_until_ready(tree)


def time_calls(fn: Callable[..., Any], args_fn: Callable[[], tuple], *, repeats: int = 10,
               warmup: int = 2) -> dict:
  """Median/min/max wall time of `fn(*args_fn())`; `args_fn` rebuilds donated inputs."""
  for _ in range(warmup):
    block(fn(*args_fn()))
  times = []
  for _ in range(repeats):
    args = args_fn()
    block(args)
    t0 = time.perf_counter()
    block(fn(*args))
    times.append(time.perf_counter() - t0)
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
          "repeats": repeats}


def compile_stats(jitted, *args) -> tuple[Any, dict]:
  """Lower + compile once; returns (compiled, {compile_s, flops, peak_bytes...})."""
  t0 = time.perf_counter()
  lowered = jitted.lower(*args)
  compiled = lowered.compile()
  out = {"compile_s": time.perf_counter() - t0}
  out["flops"] = _flops(compiled)
  mem = _memory(compiled)
  out.update(mem)
  return compiled, out


def _flops(compiled) -> float | None:
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  (backend without cost analysis)
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost:
    return None
  flops = cost.get("flops")
  return float(flops) if flops is not None and flops >= 0 else None


def _memory(compiled) -> dict:
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return {}
  if m is None:
    return {}
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
            "generated_code_size_in_bytes", "alias_size_in_bytes")
  out = {f: int(getattr(m, f)) for f in fields if hasattr(m, f)}
  if out:
    out["peak_estimate_bytes"] = (out.get("argument_size_in_bytes", 0)
                                  + out.get("output_size_in_bytes", 0)
                                  + out.get("temp_size_in_bytes", 0)
                                  - out.get("alias_size_in_bytes", 0))
  return out


def device_peak_bytes() -> int | None:
  """Allocator high-water mark where the backend reports it (GPU/TPU; None on CPU)."""
  try:
    stats = jax.local_devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  if not stats:
    return None
  return stats.get("peak_bytes_in_use")


def matmul_peak(n: int = 4096, repeats: int = 10, dtype=jnp.float32) -> dict:
  """Measured float32 matmul throughput on device 0: the yardstick for 'fraction of peak'."""
  key_a, key_b = jax.random.split(jax.random.key(0))
  a = jax.random.normal(key_a, (n, n), dtype)
  b = jax.random.normal(key_b, (n, n), dtype)
  f = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
  t = time_calls(f, lambda: (a, b), repeats=repeats, warmup=2)
  flops = 2.0 * n ** 3
  return {"n": n, "dtype": str(np.dtype(dtype)), "median_s": t["median_s"],
          "gflops": flops / t["median_s"] / 1e9}


def markdown_table(rows: list[dict], columns: list[str]) -> str:
  def fmt(v):
    if isinstance(v, float):
      return f"{v:.4g}"
    return "" if v is None else str(v)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
  return "\n".join(lines)


# ----------------------------------------------------------------------------- stateful steps

def busy_cpu_seconds() -> float | None:
  """System-wide busy CPU seconds since boot (Linux /proc/stat), None elsewhere."""
  try:
    with open("/proc/stat", encoding="ascii") as f:
      v = [int(x) for x in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def time_steps(step: Callable[..., tuple], state: Any, *args, repeats: int = 10,
               warmup: int = 2, first_step: int = 0, step_arg: Callable[[int], Any] = None):
  """Times a state-carrying step `state, aux = step(state, *args, step_arg(i))`.

  Runs `warmup` (at least 1) untimed steps, then `repeats` timed ones, each ending in
  `block_until_ready` (the state is donated and carried, as in a real run). Returns
  (final state, stats, aux of the first call) with stats = median/min/max seconds, all
  times, the median CPU seconds of this process per step and the median number of cores
  other processes used while a step ran (contention on a shared machine; None off Linux).
  """
  step_arg = step_arg or (lambda i: i)
  i = first_step
  first_aux = None
  for _ in range(max(1, warmup)):
    state, aux = step(state, *args, step_arg(i))
    block((state, aux))
    if first_aux is None:
      first_aux = jax.device_get(aux)
    i += 1
  times, cpus, others = [], [], []
  for _ in range(repeats):
    b0, c0 = busy_cpu_seconds(), time.process_time()
    t0 = time.perf_counter()
    state, aux = step(state, *args, step_arg(i))
    block((state, aux))
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    b1 = busy_cpu_seconds()
    times.append(dt)
    cpus.append(cpu)
    if b0 is not None and b1 is not None:
      others.append(max(b1 - b0 - cpu, 0.0) / dt)
    i += 1
  stats = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
           "repeats": repeats, "warmup": max(1, warmup),
           "times_s": [round(t, 4) for t in times],
           "cpu_s_per_step": statistics.median(cpus),
           "other_procs_cores": statistics.median(others) if others else None}
  return state, stats, first_aux


# ----------------------------------------------------------------------------- the machine

def machine_info() -> dict:
  """Platform, device kind and count, host cores, load average and library versions."""
  dev = jax.devices()[0]
  info = {"platform": dev.platform, "device_kind": getattr(dev, "device_kind", "?"),
          "num_devices": jax.device_count(), "host_cpus": os.cpu_count(),
          "machine": platform.machine(), "python": platform.python_version(),
          "jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__}
  try:
    info["loadavg"] = [round(v, 2) for v in os.getloadavg()]
  except OSError:
    info["loadavg"] = None
  return info


def fraction_of_peak(flops: float | None, seconds: float, peak_gflops: float | None):
  """Achieved FLOP/s as a fraction of the measured matmul peak (None if unknown)."""
  if not flops or not peak_gflops or seconds <= 0:
    return None
  return flops / seconds / (peak_gflops * 1e9)
