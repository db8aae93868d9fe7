#!/usr/bin/env bash
# The trained-feature-net rows of docs/results.md: CIFAR-10 (lossy JPEG copy) IPC 10 at the
# reduced CPU budget of the existing rows (300 steps, batch_real 64, seed 0; evaluation: 5
# ConvNet-3 per set, the dm protocol shortened to 100 epochs). A pool as small as fits this
# machine (4 nets x 2 epochs), then DM and NCFM with random nets, with the pool, and NCFM
# with the pool and calibration; then the ablations of docs/results.md (DM with the pool at
# pool.blend=init / final, and with calibration). Usage (repo root):
#   JAXCOND_DATA_DIR=/work/shared/data bash benchmarks/trained_nets_cifar10.sh [OUT]
# Every step is skipped when its output exists, so an interrupted sweep resumes.
set -euo pipefail
OUT=${1:-runs/i21}
mkdir -p "$OUT"
T() { /usr/bin/time -f "%e s wall, %M KiB peak" "$@"; }
CFG=experiments/cifar10.py
C="--config.steps=300 --config.batch_real=64 --config.checkpoint_every=100 --config.log_every=50 --config.eval.num_nets=0 --config.seed=0"
E="--config.eval.epochs=100 --config.eval.num_nets=5"

[ -f "$OUT/pool/pool.json" ] || T python -m jaxcond.pool --config $CFG --workdir "$OUT/pool" \
    --config.pool.size=4 --config.pool.epochs=2 2>&1 | tee "$OUT/pool.log"

run() {   # name method extra...
  local name=$1 method=$2; shift 2
  [ -f "$OUT/$name/synthetic.npz" ] || T python -m jaxcond.condense \
      --config $CFG:method=$method,ipc=10 --workdir "$OUT/$name" $C "$@" 2>&1 | tee "$OUT/$name.log"
  [ -f "$OUT/${name}_eval/results.json" ] || T python -m jaxcond.evaluate \
      --config $CFG:method=$method,ipc=10 --workdir "$OUT/${name}_eval" --protocol dm \
      --synthetic "$OUT/$name/synthetic.npz" $E 2>&1 | tee "$OUT/${name}_eval.log"
}
run dm_random dm
run dm_pool dm --config.pool.path="$OUT/pool"
run ncfm_random ncfm
run ncfm_pool ncfm --config.pool.path="$OUT/pool" --config.calib.weight=0
run ncfm_pool_calib ncfm --config.pool.path="$OUT/pool"
run dm_pool_init dm --config.pool.path="$OUT/pool" --config.pool.blend=init
run dm_pool_final dm --config.pool.path="$OUT/pool" --config.pool.blend=final
run dm_pool_calib dm --config.pool.path="$OUT/pool" --config.calib.weight=1
[ -f "$OUT/random_eval/results.json" ] || T python -m jaxcond.evaluate \
    --config $CFG:method=dm,ipc=10 --workdir "$OUT/random_eval" --baseline random $E \
    2>&1 | tee "$OUT/random_eval.log"
