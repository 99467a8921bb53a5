#!/usr/bin/env bash
# Everything the suite measures on a GPU, in one time-boxed run (a lent GPU machine gives ~10 minutes):
#   1. generate the `synthetic` data set,
#   2. `stnn perf` on CUDA at 488x488 (network and whole pipeline, binned frames/s, a host-side profile) and the
#      training step at the paper's crops,
#   3. train the shipped STNeuroNet weights with the paper's schedule (144x144x120 crops, batch 3, Adam 5e-4)
#      for as many iterations as the time box allows, threshold and minimum area tuned on the training split,
#      a learning curve on the test split (validation F1 every N iterations),
#   4. streaming STNeuroNet on CUDA (256x256 and 512x512 at 30 Hz, replayed at the recording rate) and tiled
#      inference against frame size (1024, 2048),
#   5. the CUDA tests.
# Results go to $OUT (default reports/gpu/out): perf JSON, weights + metadata, logs.
# Usage: BUDGET_S=540 bash reports/gpu/session.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-reports/gpu/out}
BUDGET_S=${BUDGET_S:-540}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 BENCH_DATA=${BENCH_DATA:-/tmp/bench-data} PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name())"
  lscpu | grep 'Model name'
} > "$OUT/hardware.txt" 2>&1
cat "$OUT/hardware.txt"

echo "== data ($(elapsed) s)"
python3 -c "from datasets.registry import get; print(len(get('synthetic').recordings), 'recordings')" 2>&1 | tail -2

echo "== perf ($(elapsed) s)"
python3 -m stnn perf --size 488 --frames 1200 --device cuda --windows-per-batch 4 --json > "$OUT/perf-cuda-488.json" 2> "$OUT/perf.log"
tail -3 "$OUT/perf.log"; cat "$OUT/perf-cuda-488.json"
python3 -m stnn perf --size 488 --frames 1200 --device cuda --windows-per-batch 4 --precision fp32 --json \
  > "$OUT/perf-cuda-488-fp32.json" 2>> "$OUT/perf.log"
# Where the pipeline's time goes on this machine (host side: pre-processing passes, transfers, file I/O).
timeout 90 python3 -m cProfile -s cumtime -m stnn perf --size 488 --frames 1200 --device cuda --windows-per-batch 4 \
  2>> "$OUT/perf.log" | head -70 > "$OUT/perf-cuda-488-profile.txt"
timeout 60 python3 -m stnn perf --train --device cuda --crop 144,144 --json > "$OUT/perf-cuda-train-144.json" \
  2>> "$OUT/perf.log"

echo "== stream and tiles ($(elapsed) s)"
python3 - <<'PY'
import numpy as np
rng = np.random.default_rng(0)
for side in (256, 512):  # 1,800 frames at 30 Hz: three 120-binned-frame windows
    np.save(f"/tmp/stream{side}.npy", rng.poisson(60, size=(1800, side, side)).astype(np.uint16))
PY
for s in 256 512; do
  timeout 120 python3 -m stnn stream /tmp/stream$s.npy --fps 30 --um-per-px 0.78 --replay-fps 30 --device cuda --json \
    > "$OUT/stream-cuda-$s.json" 2>> "$OUT/stream.log"; tail -c 400 "$OUT/stream-cuda-$s.json"
done
for s in 1024 2048; do
  # Shipped weights on a 64-px margin (measured on simulated movies; a random network needs the exact 168).
  timeout 120 python3 -m stnn perf --size $s --frames 240 --device cuda --tile 608 --tile-margin 64 \
    --weights synthetic --json > "$OUT/perf-cuda-$s.json" 2>> "$OUT/perf.log"
done
timeout 120 python3 -m stnn perf --size 1024 --frames 240 --device cuda --tile off --weights synthetic --json \
  > "$OUT/perf-cuda-1024-untiled.json" 2>> "$OUT/perf.log"

echo "== train ($(elapsed) s)"
TRAIN_S=$(( BUDGET_S - $(elapsed) - 30 ))
# The training folder holds the pre-processed recordings and checkpoints (about 1 GB): kept out of $OUT.
python3 reports/gpu/train_paper.py --seconds "$TRAIN_S" --out /tmp/stnn-synthetic 2>&1 | tail -40
mkdir -p "$OUT/stnn-synthetic"
cp /tmp/stnn-synthetic/weights.pt /tmp/stnn-synthetic/weights.json /tmp/stnn-synthetic/summary.json \
   /tmp/stnn-synthetic/history.json "$OUT/stnn-synthetic/" 2>/dev/null

echo "== CUDA tests ($(elapsed) s)"
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/stnn -k "cuda or gpu" -o addopts="" 2>&1 | tail -5
echo "== done ($(elapsed) s)"
