#!/usr/bin/env bash
# Train (or continue) the compact-preset candidates on the synthesised piano corpus, on the CPU,
# in the background, one thread each. Rerunning it resumes every run from its last checkpoint.
#   bash scripts/train_candidates.sh            # both candidates
#   STEPS=20000 bash scripts/train_candidates.sh small
#   THREADS=2 bash scripts/train_candidates.sh small-shallow   # only the chosen prior (piano-small), both cores
# NICE (default 19) keeps training on idle cycles only, so tests and benchmarks run at full speed.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-100000}
for preset in "${@:-small small-shallow}"; do
  for p in $preset; do
    out=runs/piano-$p
    resume=""
    [ -f "$out/checkpoint.pt" ] && resume="--resume"
    mkdir -p "$out"
    setsid nohup nice -n "${NICE:-19}" python -m cqtrestore train data/piano/train --valid-dir data/piano/valid \
      --out "$out" --preset "$p" --steps "$STEPS" --batch-size 2 --segment 16384 --lr 5e-4 --warmup 200 \
      --ema 0.999 --valid-crops 8 --save-every 100 --log-every 20 --threads "${THREADS:-1}" --seed 0 $resume >> "$out/train.out" 2>&1 &
    # setsid gives the run its own scheduler autogroup, where plain nice has no effect against other
    # sessions: lower the group's priority too, so training only takes otherwise idle cycles.
    sleep 2  # let setsid create the session first; then find the trainer itself
    pid=$(pgrep -n -f -- "--out $out " || true)
    [ -n "$pid" ] && { echo "${NICE:-19}" > "/proc/$pid/autogroup"; } 2>/dev/null || true
    echo "started $p -> $out (pid ${pid:-?})"
  done
done
