"""The cost of `--config.tensorboard=True` on the condensation loop (docs/benchmarks.md).

    PYTHONPATH=. python benchmarks/tensorboard_cost.py [--repeats 5] [--json OUT]

Runs the quickstart (DM on digits, 200 steps, no evaluation) `--repeats` times with the
option off and on, alternating (off, on, off, on, ...) so that load from other processes
hits both alike, each in a fresh workdir and its own process. Reports per setting the median
over runs of (a) the median `step_time_s` of the run's log intervals (metrics.jsonl), which
includes the TensorBoard write of each interval's scalars, and (b) the loop's total, the
sum over the intervals of `step_time_s` × steps. Compile and data loading are outside both.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def one_run(tensorboard: bool, workdir: str) -> dict:
  cmd = [sys.executable, "-m", "jaxcond.condense", "--config", "experiments/quickstart.py",
         "--workdir", workdir, "--config.eval.num_nets=0", "--config.log_every=10",
         "--config.checkpoint_every=50", f"--config.tensorboard={tensorboard}"]
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
  records = [json.loads(l) for l in pathlib.Path(workdir, "metrics.jsonl").read_text()
             .splitlines() if l.strip()]
  times = [r["step_time_s"] for r in records[1:]]   # the first interval holds a warm-up
  done = [l for l in out.stdout.splitlines() + out.stderr.splitlines() if l.startswith("done:")]
  return {"median_step_s": statistics.median(times), "intervals": len(times),
          "sum_step_s": sum(r["step_time_s"] * r["steps_in_interval"] for r in records),
          "done": done[-1] if done else ""}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--json", default="")
  a = p.parse_args(argv)
  rows = {False: [], True: []}
  with tempfile.TemporaryDirectory() as tmp:
    for i in range(a.repeats):
      for tb in (False, True):
        r = one_run(tb, os.path.join(tmp, f"{tb}_{i}"))
        rows[tb].append(r)
        print(json.dumps({"tensorboard": tb, "repeat": i, **r}), flush=True)
  summary = {}
  for tb, rs in rows.items():
    summary["on" if tb else "off"] = {
        "median_step_s": statistics.median(r["median_step_s"] for r in rs),
        "median_loop_s": statistics.median(r["sum_step_s"] for r in rs),
        "runs": len(rs)}
  on, off = summary["on"], summary["off"]
  summary["ratio_step"] = on["median_step_s"] / off["median_step_s"]
  summary["ratio_loop"] = on["median_loop_s"] / off["median_loop_s"]
  print(json.dumps(summary), flush=True)
  if a.json:
    pathlib.Path(a.json).write_text(json.dumps({"runs": {str(k): v for k, v in rows.items()},
                                                "summary": summary}, indent=1) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
