"""The issue-13 acceptance plans: `--plan` for every shipped large config, one JSON file.

    PYTHONPATH=. nice -n 5 python benchmarks/plan_sweep.py --out docs/plan_sweep.json

Each case runs `python -m jaxcond.condense --config ... --plan --devices N
--config.memory_budget_gb=B` in its own process with an EMPTY data folder (JAXCOND_DATA_DIR
points at a fresh temporary directory: a plan reads no data), and records the plan's last
JSON line, the process's wall time and the machine's load average. `--only SUBSTR` keeps the
cases whose name contains SUBSTR.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

CASES = (   # the most informative first: the file is rewritten after every case
    [(f"imagenet1k {m} ipc10 8dev 16GiB", f"experiments/imagenet1k.py:method={m},ipc=10", 8,
      16) for m in ("dm", "m3d", "ddm")]
    + [(f"imagenet1k {m} ipc10 1dev 80GiB", f"experiments/imagenet1k.py:method={m},ipc=10", 1,
        80) for m in ("dm", "m3d")]
    + [(f"imagenet1k {m} ipc{i} 8dev 16GiB", f"experiments/imagenet1k.py:method={m},ipc={i}", 8,
        16) for i in (50, 1) for m in ("dm", "m3d", "ddm")]
    + [(f"tinyimagenet {m} ipc50 8dev 16GiB", f"experiments/tinyimagenet.py:method={m},ipc=50",
        8, 16) for m in ("dm", "m3d", "ddm")]
    + [("cifar100 dm ipc50 1dev 4GiB unchunked", "experiments/cifar100.py:method=dm,ipc=50", 1,
        4, ("--config.real_chunk=0", "--config.syn_chunk=0"))]
)


def run_case(name, config, devices, budget, extra=()):
  with tempfile.TemporaryDirectory() as empty:
    env = dict(os.environ, JAXCOND_DATA_DIR=empty, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "jaxcond.condense", "--config", config, "--plan",
           "--devices", str(devices), f"--config.memory_budget_gb={budget}", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    left = os.listdir(empty)
  if proc.returncode:
    return {"case": name, "error": proc.stderr.strip().splitlines()[-1:], "wall_s": wall}
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  out.update(case=name, command=" ".join(cmd[1:]), wall_s=wall, data_dir_untouched=not left,
             per_device_gib=out["per_device_bytes"] / 2 ** 30,
             plan_block=[l for l in proc.stdout.splitlines() if l.startswith(("memory", "  "))],
             loadavg=list(os.getloadavg()))
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", required=True)
  ap.add_argument("--only", default="")
  args = ap.parse_args(argv)
  rows = []
  for name, config, devices, budget, *extra in CASES:
    if args.only and args.only not in name:
      continue
    r = run_case(name, config, devices, budget, *extra)
    rows.append(r)
    print(json.dumps({k: r.get(k) for k in ("case", "fits", "per_device_gib", "compile_s",
                                             "plan_s", "wall_s", "real_chunk", "real_cpg",
                                             "syn_cpg", "error")}), flush=True)
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
