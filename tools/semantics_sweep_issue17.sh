#!/usr/bin/env bash
# Issue 17 sweep on planar push (resumable: run it again to continue). Order: what answers the most first.
# STEPS=1200 BUDGET=50 OUT=runs/semsweep1200 bash tools/semantics_sweep_issue17.sh: the 1,200-steps-per-round sweep.
set -ef   # -f: the overrides hold brackets ([16,16,16,16]), never globs
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MUJOCO_GL=egl
PY=${PY:-python}
OUT=${OUT:-runs/semsweep}
COMMON="budget=${BUDGET:-20} per_round=10 mapper.members=3 mapper.encoder.channels=[16,16,16,16] trainer.batch_size=32 trainer.optim.lr=2e-3 \
  train_schedule.steps=${STEPS:-400} vae_trainer.steps=400 vae_seed=0 transfer.episodes=50"
S="nice -n 10 $PY tools/semantics_sweep.py --out $OUT"
$S --seeds 0 --strategies diversity random_episodes variance random_frames -- $COMMON
$S --seeds 1 2 --strategies diversity random_episodes -- $COMMON
$S --seeds 1 2 --strategies variance random_frames -- $COMMON
$S --seeds 0 1 2 --strategies hybrid -- $COMMON
# Noise robustness (item 4): tools/semantics_noise_issue17.sh (annotation_noise / transition_noise as fractions of range).
