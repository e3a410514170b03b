#!/usr/bin/env bash
# Meta-World push-v3 / door-open-v3 / pick-place-v3, state obs, 50 expert demos each:
# BESO (DDIM, 3 steps) vs Diffusion Policy (DDIM-10), same U-Net denoiser, lr and number of steps;
# then a fresh-positions check. The recorded results (docs/results/metaworld.md) are these settings.
# Machine used: 2-core CPU, shared, OMP_NUM_THREADS=1.
#   bash tools/exp_metaworld.sh [STEPS] [TASKS...]       (outputs under experiments/mw3/; demos in experiments/mw/)
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export OMP_NUM_THREADS=1 MUJOCO_GL=egl
STEPS=${1:-3000}
NET_ARGS=${NET_ARGS:-"net=unet"}; shift || true
TASKS=${*:-push-v3 door-open-v3 pick-place-v3}
D=experiments/mw
E=experiments/mw3
mkdir -p $D $E
COMMON="progress=false wandb.mode=disabled final_eval.episodes=0 eval.every=1000 eval.episodes=20"
for T in $TASKS; do
  [ -d $D/$T.zarr ] || robopolicy-collect task=metaworld task.env_name=$T episodes=50 noise=0.0 out=$D/$T.zarr progress=false 2>&1 | tee $D/$T.collect.log
  for P in beso diffusion; do
    robopolicy-train task=metaworld task.env_name=$T policy=$P $NET_ARGS \
      dataset=$D/$T.zarr steps=$STEPS run_dir=$E/${T}_$P $COMMON 2>&1 | tee $E/${T}_$P.train.log
    # policy defaults: beso sampler ddim/3 steps, diffusion sampler ddim/10 steps (conf/policy/*.yaml)
    robopolicy-eval run_dir=$E/${T}_$P episodes=100 progress=false wandb.mode=disabled 2>&1 | tee $E/${T}_$P.eval.log
  done
done
# Fresh object/goal positions instead of the 50 standard MT1 variations (one task)
for P in beso diffusion; do
  robopolicy-eval run_dir=$E/door-open-v3_$P episodes=50 task.fresh_positions=true progress=false wandb.mode=disabled \
    out=$E/door-open-v3_$P/eval_fresh.json
done
# The sampler x seed sweep over the three BESO runs: bash tools/exp_sweep.sh experiments/mw3 50
