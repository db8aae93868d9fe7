#!/usr/bin/env bash
# The prepared accelerator check: one command, <= 8 minutes on one GPU, JSON into OUTDIR.
#
#   benchmarks/accelerator_check.sh OUTDIR              # on the GPU machine, repo root
#   benchmarks/accelerator_check.sh OUTDIR --cpu-smoke  # every piece at tiny sizes on CPU
#
# Pieces (each bounded by `timeout`, each writes its own file; OUTDIR/summary.json lists
# status, seconds and file of every piece, plus the machine):
#   1. tests.xml / tests.json  the fast test subset (pytest -m "not slow") on the device;
#   2. cifar10_step.jsonl      jaxcond.bench, CIFAR-10 shapes, DM and M3D at IPC 1/10/50,
#                              reference workload; vs_torch.jsonl beside the PyTorch
#                              reference step (--device cuda) when torch and
#                              torch_reference_step.py (TORCH_REF, default
#                              ../shared/bench/torch_reference_step.py) are present;
#   3. in1k_step.jsonl         the planned ImageNet-1K 64 px DM IPC 10 step on fake data: step
#                              time, memory (allocator peak), fraction of a float32 matmul
#                              peak measured in the same run, the plan it ran with;
#   4. eval.jsonl              evaluation throughput: networks per hour, dm protocol, IPC 10.
#
# Dependencies. Expected on the machine: Python 3.10+, jax (CUDA build, 0.10.2-0.11.x),
# flax, optax, orbax-checkpoint, chex, numpy, pillow, pytest. jaxcond also needs
# ml_collections (+ absl-py, PyYAML) and scikit-learn for the digits tests; an offline machine
# gets them from a `.whl/` folder in the repo root when there is one:
#   on a machine with internet, same Python version as the GPU machine (here 3.12):
#     python -m pip download -d .whl --only-binary=:all: --python-version 3.12 \
#         --platform manylinux2014_x86_64 ml_collections absl-py PyYAML
#   the script then runs `pip install --no-index --find-links .whl ml_collections`.
set -u
OUT="${1:?usage: benchmarks/accelerator_check.sh OUTDIR [--cpu-smoke]}"
MODE="${2:-}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
TORCH_REF="${TORCH_REF:-$ROOT/../shared/bench/torch_reference_step.py}"
STATUS="$OUT/status.tsv"
LIMIT_SCALE="${LIMIT_SCALE:-1}"   # multiplies every piece's time limit (slow or shared CPUs)
: > "$STATUS"

if [ -d "$ROOT/.whl" ] && ! "$PY" -c "import ml_collections" 2>/dev/null; then
  "$PY" -m pip install --no-index --find-links "$ROOT/.whl" ml_collections absl-py PyYAML \
      > "$OUT/pip.log" 2>&1 || echo "pip install from .whl failed (see pip.log)"
fi

# piece NAME SECONDS CMD...: runs CMD with a time limit, records status and wall seconds.
piece() {
  local name="$1" limit="$2"; shift 2
  local t0 t1 rc
  t0=$(date +%s)
  timeout "$((limit * LIMIT_SCALE))" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
  rc=$?
  t1=$(date +%s)
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((t1 - t0))" >> "$STATUS"
  echo "[$name] rc=$rc ($(tail -c 300 "$OUT/$name.err" | tail -n 1))"
}

if [ "$MODE" = "--cpu-smoke" ]; then
  export JAX_PLATFORMS=cpu
  LIMIT_SCALE="${LIMIT_SCALE_SMOKE:-4}"
  TESTS=(tests/test_plan.py -k "cpu_preference or one_chunk_when")
  SMALL=(--set batch_real=8 --set model.width=8 --repeats 2 --warmup 1 --peak-n 256)
  C10_IPCS=1,10
  IN1K=(--set batch_real=2 --set model.width=8 --set dataset.resolution=16 --set ipc=2
        --repeats 2 --warmup 1 --peak-n 256)
  EVAL=(--set batch_real=8 --set model.width=8 --eval --eval-nets 1 --eval-passes 2
        --repeats 1 --warmup 0 --peak-n 0)
  TORCH_ITERS=2
else
  TESTS=(tests/test_mmd.py tests/test_objectives.py tests/test_steps.py tests/test_plan.py
         tests/test_nets.py -m "not slow")
  SMALL=(--repeats 10 --warmup 2 --peak-n 8192)
  C10_IPCS=1,10,50
  IN1K=(--repeats 10 --warmup 2 --peak-n 8192)
  EVAL=(--eval --eval-nets 4 --eval-passes 6 --repeats 2 --warmup 1 --peak-n 0)
  TORCH_ITERS=10
fi

"$PY" - > "$OUT/machine.json" <<'EOF'
import json, jax
from jaxcond import benchlib, plan
info = benchlib.machine_info()
try:
  info["bytes_limit"] = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")
except Exception:  # CPU
  info["bytes_limit"] = None
print(json.dumps(info))
EOF

# 1. fast tests on the device (tests that need 8 devices fail on one GPU: reported as such)
piece tests 150 "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" --junitxml "$OUT/tests.xml"

# 2. CIFAR-10 step, DM and M3D, beside the PyTorch reference when available
if "$PY" -c "import torch" 2>/dev/null && [ -f "$TORCH_REF" ] && [ "$MODE" != "--cpu-smoke" ]; then
  DEV=cuda; "$PY" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" || DEV=cpu
  piece vs_torch 240 "$PY" benchmarks/vs_torch.py --methods dm,m3d --ipcs "$C10_IPCS" \
      --m3d-modes per_class --iters "$TORCH_ITERS" --rounds 1 --device "$DEV" \
      --torch-ref "$TORCH_REF" --jsonl "$OUT/vs_torch.jsonl"
else
  piece cifar10_step 240 "$PY" -m jaxcond.bench --config experiments/cifar10.py \
      --method dm,m3d --ipc "$C10_IPCS" --fake-data --workload reference "${SMALL[@]}" \
      --jsonl "$OUT/cifar10_step.jsonl"
fi

# 3. the planned ImageNet-1K 64 px DM IPC 10 step (fake data; chunks from the device limit)
piece in1k_step 150 "$PY" -m jaxcond.bench --config experiments/imagenet1k.py:method=dm,ipc=10 \
    --fake-data "${IN1K[@]}" --jsonl "$OUT/in1k_step.jsonl"

# 4. evaluation throughput (nets per hour, dm protocol, IPC 10, CIFAR-10 shapes)
piece eval 120 "$PY" -m jaxcond.bench --config experiments/cifar10.py:method=dm,ipc=10 \
    --fake-data "${EVAL[@]}" --jsonl "$OUT/eval.jsonl"

"$PY" - "$OUT" <<'EOF'
import json, os, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
summary = {"machine": json.load(open(os.path.join(out, "machine.json"))), "pieces": {}}
for line in open(os.path.join(out, "status.tsv")):
  name, rc, sec = line.rstrip("\n").split("\t")
  summary["pieces"][name] = {"rc": int(rc), "seconds": float(sec or 0),
                             "timed_out": int(rc) == 124}
xml = os.path.join(out, "tests.xml")
if os.path.exists(xml):
  root = ET.parse(xml).getroot()
  suite = root if root.tag == "testsuite" else root.find("testsuite")
  summary["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
for name in ("vs_torch", "cifar10_step", "in1k_step", "eval"):
  path = os.path.join(out, f"{name}.jsonl")
  if os.path.exists(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    keep = ("case", "method", "ipc", "mode", "median_step_s", "ratio", "jax_median_s",
            "torch_median_s", "peak_bytes", "fraction_of_peak", "peak_gflops", "compile_s",
            "eval_nets_per_hour", "real_chunk", "real_cpg", "syn_cpg")
    summary[name] = [{k: r[k] for k in keep if k in r} for r in rows]
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps(summary["pieces"]))
EOF
