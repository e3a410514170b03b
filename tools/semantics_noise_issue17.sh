#!/usr/bin/env bash
# Issue 17 item 4: noise robustness of variance + augmentation on planar push (resumable: run it again to continue).
# Levels are fractions of each semantic dimension's range (planar push: 0.6 m, so 0.01 = 0.6 cm):
#   annotation_noise: the std of the oracle's label noise; transition_noise: the std added after every simulated step
#   of pair augmentation (it accumulates along the 20-frame segment). One seed at a time over all levels, in the
#   order that shapes the curve first (no noise, the largest levels, then the rest).
set -ef   # -f: the overrides hold brackets ([16,16,16,16]), never globs
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MUJOCO_GL=egl
PY=${PY:-python}
OUT=${OUT:-runs/semnoise}
SEEDS=${SEEDS:-0 1 2}
COMMON="budget=${BUDGET:-40} per_round=10 mapper.members=3 mapper.encoder.channels=[16,16,16,16] trainer.batch_size=32 \
  trainer.optim.lr=2e-3 train_schedule.steps=400 vae_trainer.steps=400 vae_seed=0 transfer.episodes=50 transfer.every_round=false"
for seed in $SEEDS; do
  nice -n "${NICE:-15}" "$PY" tools/semantics_sweep.py --out "$OUT" --seeds "$seed" --strategies variance \
    --condition base \
    --condition annot_0.05 annotation_noise=0.05 --condition trans_0.01 transition_noise=0.01 \
    --condition annot_0.02 annotation_noise=0.02 --condition trans_0.005 transition_noise=0.005 \
    --condition annot_0.01 annotation_noise=0.01 --condition trans_0.002 transition_noise=0.002 \
    -- $COMMON
done
"$PY" tools/semantics_noise_plot.py --sweep "$OUT" --out docs/results/semantics_noise.png
