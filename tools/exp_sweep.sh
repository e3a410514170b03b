#!/usr/bin/env bash
# Sweep: 3 Meta-World BESO runs x 2 samplers x 3 seed blocks with one command, then the report.
#   bash tools/exp_sweep.sh [RUNS_DIR] [EPISODES] [SWEEP_DIR]
# RUNS_DIR holds <task>_beso runs for push-v3, door-open-v3 and pick-place-v3 (tools/exp_metaworld.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export OMP_NUM_THREADS=1 MUJOCO_GL=egl
E=${1:-experiments/mwu}
EP=${2:-50}
OUT=${3:-experiments/sweep_unet}
robopolicy-eval --multirun run_dir=$E/push-v3_beso,$E/door-open-v3_beso,$E/pick-place-v3_beso \
  policy.sampler.name=ddim,dpmsolver++ seed=3,4,5 episodes=$EP progress=false wandb.mode=disabled \
  sweep_dir=$OUT hydra.launcher.n_jobs=2
robopolicy-report $OUT
