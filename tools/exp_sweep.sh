#!/usr/bin/env bash
# Issue 4 sweep: 3 Meta-World BESO runs x 2 samplers x 3 seeds with one command, then the report.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export OMP_NUM_THREADS=1 MUJOCO_GL=egl
E=experiments/mw
EP=${1:-50}
robopolicy-eval --multirun run_dir=$E/push-v3_beso,$E/door-open-v3_beso,$E/pick-place-v3_beso \
  policy.sampler.name=ddim,euler seed=0,1,2 episodes=$EP progress=false wandb.mode=disabled \
  sweep_dir=experiments/sweep1 hydra.launcher.n_jobs=1
robopolicy-report experiments/sweep1
