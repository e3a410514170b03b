#!/usr/bin/env bash
# Reproduces the multimodal-task experiment (issue 3 done-means) and the runner-vs-eval check (issue 7)
# with the public commands. Machine used: 2-core CPU, shared, OMP_NUM_THREADS=1.
#   bash tools/exp_multimodal.sh [STEPS]      (outputs under experiments/mm/)
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export OMP_NUM_THREADS=1 MUJOCO_GL=egl
STEPS=${1:-5000}
E=experiments/mm
mkdir -p $E
COMMON="progress=false wandb.mode=disabled final_eval.episodes=0"
[ -d $E/demos.zarr ] || robopolicy-collect task=multimodal episodes=100 out=$E/demos.zarr progress=false
for P in beso diffusion bc; do
  robopolicy-train task=multimodal policy=$P net=mlp 'net.hidden_dims=[512,512,512]' dataset=$E/demos.zarr \
    steps=$STEPS run_dir=$E/$P $COMMON 2>&1 | tee $E/$P.train.log
  robopolicy-eval run_dir=$E/$P episodes=100 progress=false wandb.mode=disabled 2>&1 | tee $E/$P.eval.log
done
# issue 7: the same BESO run through the real-time runner on the simulated robot (task control_hz = 10)
robopolicy-deploy run_dir=$E/beso runner=eval_match rate_hz=10 duration_s=0 runner.episodes=50 out=$E/beso_deploy plot=false 2>&1 | tee $E/beso.deploy.log
