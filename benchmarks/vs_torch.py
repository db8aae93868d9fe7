"""jaxcond step vs the PyTorch reference iteration, one right after the other.

    PYTHONPATH=. python benchmarks/vs_torch.py --methods dm,m3d --ipcs 1,10,50 \\
        [--m3d-modes joint,per_class] [--iters 10] [--threads 2] [--device cpu|cuda]

For every (method, IPC): `python -m jaxcond.bench --workload reference --fake-data` (one
process per case, its last stdout line is the JSON result), then
`../shared/bench/torch_reference_step.py` with the allocator tuning
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184
(the "tuned reference", the yardstick of issue 6). The two alternate `--rounds` times
(J T J T) so that load from other processes hits both alike. Prints one JSON line per
case and a Markdown table with ratio = median jaxcond step / median tuned-reference
iteration over the rounds (target <= 1.0), and the ratio of each round.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
TORCH_SCRIPT = ROOT.parent / "shared" / "bench" / "torch_reference_step.py"
TUNED = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"


def _last_json(out: str) -> dict:
  for line in reversed(out.strip().splitlines()):
    line = line.strip()
    if line.startswith("{"):
      return json.loads(line)
  raise RuntimeError(f"no JSON line in output:\n{out[-2000:]}")


def run_jax(method, ipc, mode, args) -> dict:
  cmd = [sys.executable, "-m", "jaxcond.bench", "--config",
         f"experiments/cifar10.py:method={method},ipc={ipc}", "--fake-data",
         "--workload", "reference", "--repeats", str(args.iters), "--warmup", "2",
         "--peak-n", str(args.peak_n)]
  if method == "m3d":
    cmd += ["--set", f"m3d.step_mode={mode}"]
  cmd += [a for s in args.set for a in ("--set", s)]
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(proc.stderr[-3000:])
  return _last_json(proc.stdout)


def run_torch(method, ipc, args, threads, tuned=True) -> dict:
  cmd = [sys.executable, str(args.torch_ref), "--method", method, "--ipc", str(ipc),
         "--iters", str(args.iters), "--threads", str(threads), "--device", args.device]
  env = dict(os.environ)
  if tuned:
    env["GLIBC_TUNABLES"] = TUNED
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(proc.stderr[-3000:])
  return _last_json(proc.stdout)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--methods", default="dm,m3d")
  ap.add_argument("--ipcs", default="1,10,50")
  ap.add_argument("--m3d-modes", default="joint,per_class")
  ap.add_argument("--iters", type=int, default=10)
  ap.add_argument("--rounds", type=int, default=2,
                  help="alternate jaxcond and reference runs this many times")
  ap.add_argument("--torch-threads", default="2",
                  help="comma-separated torch thread counts; the first is the yardstick, "
                       "ratio_vs_best_threads compares with the fastest (on a shared "
                       "machine 2 threads on ~1 free core can lose to 1 thread)")
  ap.add_argument("--device", default="cpu")
  ap.add_argument("--torch-ref", default=str(TORCH_SCRIPT),
                  help="path of torch_reference_step.py")
  ap.add_argument("--peak-n", type=int, default=4096)
  ap.add_argument("--set", action="append", default=[], help="passed to jaxcond.bench")
  ap.add_argument("--jsonl", default=None)
  args = ap.parse_args(argv)

  rows = []
  for method in args.methods.split(","):
    for ipc in [int(v) for v in args.ipcs.split(",")]:
      modes = args.m3d_modes.split(",") if method == "m3d" else [None]
      jax_runs = {m: [] for m in modes}
      threads = [int(v) for v in args.torch_threads.split(",")]
      torch_by_threads = {n: [] for n in threads}
      for _ in range(args.rounds):       # J T J T ...: contention hits both alike
        for mode in modes:
          jax_runs[mode].append(run_jax(method, ipc, mode, args))
        for n in threads:
          torch_by_threads[n].append(run_torch(method, ipc, args, threads=n))
      torch_runs = torch_by_threads[threads[0]]
      t_med = statistics.median(t["median_s_per_iter"] for t in torch_runs)
      t_meds = {n: statistics.median(t["median_s_per_iter"] for t in runs)
                for n, runs in torch_by_threads.items()}
      t_best = min(t_meds.values())
      for mode in modes:
        js = jax_runs[mode]
        j = js[-1]
        j_med = statistics.median(r["median_step_s"] for r in js)
        row = {"method": method, "ipc": ipc, "mode": mode or "",
               "jax_median_s": j_med, "jax_min_s": min(r["min_step_s"] for r in js),
               "jax_max_s": max(r["max_step_s"] for r in js),
               "jax_runs_s": [round(r["median_step_s"], 3) for r in js],
               "jax_compile_s": j["compile_s"],
               "torch_median_s": t_med,
               "torch_runs_s": [round(t["median_s_per_iter"], 3) for t in torch_runs],
               "ratio": j_med / t_med,
               "torch_median_by_threads": {str(n): v for n, v in t_meds.items()},
               "ratio_vs_best_threads": j_med / t_best,
               "round_ratios": [round(r["median_step_s"] / t["median_s_per_iter"], 3)
                                for r, t in zip(js, torch_runs)],
               "images_per_s": j["images_per_step"] / j_med,
               "gflop_per_step": j["flops_per_step"] / 1e9,
               "peak_gflops": j["peak_gflops"],
               "fraction_of_peak": j["flops_per_step"] / j_med / (j["peak_gflops"] * 1e9),
               "jax_other_cores": j["other_procs_cores"],
               "torch_other_cores": torch_runs[-1]["median_other_procs_cores"],
               "torch_loss": torch_runs[-1]["loss_median"], "jax_loss": j["loss_first"],
               "loadavg": j["machine"]["loadavg"], "jax": js,
               "torch": {str(n): runs for n, runs in torch_by_threads.items()}}
        rows.append(row)
        slim = {k2: v for k2, v in row.items() if k2 not in ("jax", "torch")}
        print(json.dumps(slim), flush=True)
        if args.jsonl:
          with open(args.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
  sys.path.insert(0, str(ROOT))
  from jaxcond import benchlib  # pylint: disable=g-import-not-at-top
  print(benchlib.markdown_table(rows, ["method", "ipc", "mode", "jax_median_s", "jax_min_s",
                                       "jax_max_s", "torch_median_s", "ratio", "round_ratios",
                                       "torch_median_by_threads", "ratio_vs_best_threads",
                                       "images_per_s", "gflop_per_step", "fraction_of_peak",
                                       "jax_other_cores", "torch_other_cores"]))


if __name__ == "__main__":
  main()
