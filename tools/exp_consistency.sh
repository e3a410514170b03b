#!/usr/bin/env bash
# Consistency distillation: BESO teacher (3 steps) vs its 1-step consistency student, same seeds.
# Per task: collect demos, train the teacher, distil the student from it, evaluate both on 100 episodes (seed block 3).
# Machine used: 2-core CPU, shared, OMP_NUM_THREADS=1. CD_STEPS=200 gives the cheaper student of docs/results/consistency.md;
# EXTRA=0 skips the teacher-1-step and student-2-step evaluations.
#   bash tools/exp_consistency.sh [TASKS...]      (multimodal push-v3 door-open-v3 pick-place-v3; outputs in experiments/cd/)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MUJOCO_GL=egl
BIN=${BIN:-.venv/bin}
TASKS=${*:-multimodal push-v3 door-open-v3 pick-place-v3}
E=${E:-experiments/cd}
NET="net=unet net.down_dims=[32,64,128] batch_size=128 optim.lr=1e-3"
COMMON="progress=false wandb.mode=disabled final_eval.episodes=0"
CD_STEPS=${CD_STEPS:-800}
CD_ARGS=${CD_ARGS:-"batch_size=128 optim.lr=2e-4 optim.warmup_steps=50"}
EVAL="episodes=100 seed=3 progress=false wandb.mode=disabled"
mkdir -p $E
for T in $TASKS; do
  if [ "$T" = multimodal ]; then TASK="task=multimodal" N=mm COLLECT="episodes=100"
  else TASK="task=metaworld task.env_name=$T" N=$T COLLECT="episodes=50 noise=0.0"; fi
  [ -d $E/$N.zarr ] || $BIN/robopolicy-collect $TASK $COLLECT out=$E/$N.zarr progress=false > $E/$N.collect.log 2>&1
  [ -f $E/${N}_teacher/summary.json ] && grep -q '"step": 3000' $E/${N}_teacher/summary.json || \
    $BIN/robopolicy-train $TASK policy=beso $NET dataset=$E/$N.zarr steps=3000 run_dir=$E/${N}_teacher $COMMON > $E/${N}_teacher.train.log 2>&1
  $BIN/robopolicy-train $TASK policy=consistency policy.teacher=$E/${N}_teacher dataset=$E/$N.zarr steps=$CD_STEPS \
    $CD_ARGS run_dir=$E/${N}_cd $COMMON > $E/${N}_cd.train.log 2>&1
  $BIN/robopolicy-eval run_dir=$E/${N}_teacher $EVAL out=$E/${N}_teacher/eval_ddim3.json > $E/${N}_teacher.eval.log 2>&1
  $BIN/robopolicy-eval run_dir=$E/${N}_cd $EVAL out=$E/${N}_cd/eval_cd1.json > $E/${N}_cd.eval.log 2>&1
  if [ "${EXTRA:-1}" = 1 ]; then  # the teacher at 1 step and the student at 2 steps, on the same episodes
    $BIN/robopolicy-eval run_dir=$E/${N}_teacher $EVAL policy.sampler.steps=1 out=$E/${N}_teacher/eval_ddim1.json > $E/${N}_teacher.eval1.log 2>&1
    $BIN/robopolicy-eval run_dir=$E/${N}_cd $EVAL policy.sampler.steps=2 out=$E/${N}_cd/eval_cd2.json > $E/${N}_cd.eval2.log 2>&1
  fi
done
