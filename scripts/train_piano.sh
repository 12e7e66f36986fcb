#!/usr/bin/env bash
# Train (or continue) the bundled piano prior: preset small-shallow with spectral preconditioning, on the
# synthesised corpus (scripts/make_piano_corpus.py), on the CPU, in the background. Rerunning it resumes
# runs/piano-spectral from its last checkpoint (saved every SAVE_EVERY steps).
#   bash scripts/train_piano.sh                 # 2 threads at the lowest priority
#   THREADS=1 NICE=10 bash scripts/train_piano.sh
# Before a session stops: python scripts/bundle_weights.py (exports the EMA into cqtrestore/weights/).
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/piano-spectral
resume=""
[ -f "$out/checkpoint.pt" ] && resume="--resume"
mkdir -p "$out"
setsid nohup nice -n "${NICE:-19}" python -m cqtrestore train data/piano/train --valid-dir data/piano/valid \
  --out "$out" --preset small-shallow --precondition spectral --edge-taper 256 --steps "${STEPS:-200000}" --batch-size 2 \
  --segment 16384 --lr 5e-4 --warmup 200 --ema 0.999 --sigma-min 1e-5 --sigma-max 2 --valid-crops 8 \
  --save-every "${SAVE_EVERY:-200}" --log-every 20 --threads "${THREADS:-2}" --seed 0 $resume >> "$out/train.out" 2>&1 &
# setsid gives the run its own scheduler autogroup, where plain nice has no effect against other sessions:
# lower the group's priority too, so training only takes otherwise idle cycles.
sleep 2
pid=$(pgrep -n -f -- "--out $out " || true)
[ -n "$pid" ] && { echo "${NICE:-19}" > "/proc/$pid/autogroup"; } 2>/dev/null || true
echo "started piano-spectral -> $out (pid ${pid:-?})"
