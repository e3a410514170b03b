#!/usr/bin/env bash
# Meta-World push-v3 active-learning curve, one strategy, one seed (docs/results/semantics_metaworld.md, "front camera"):
# the hand and gripper read from the robot, budget 50 in rounds of 10, segment 20, 20 transfer episodes every round.
#   bash tools/semantics_metaworld_curve.sh RUN_DIR STRATEGY [STEPS] [more overrides]
# e.g. bash tools/semantics_metaworld_curve.sh experiments/mwreach/variance variance 6000 data.reach_steps=30
# The offline data, held-out data and reference are shared through cache_dir (RUN_DIR/../cache).
set -ef   # -f: the overrides hold brackets, never globs
RUN=${1:?run dir}
STRAT=${2:?strategy: random_frames | random_episodes | diversity | variance | hybrid}
STEPS=${3:-6000}   # per round, every strategy: 1,500 under-trains the mapper here (semantics_metaworld.md)
shift $(( $# < 3 ? $# : 3 ))
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MUJOCO_GL=${MUJOCO_GL:-egl}
$PY -m robopolicy.cli.semantics mode=active run_dir="$RUN" cache_dir="$(dirname "$RUN")/cache" task=metaworld \
  task.env_name=push-v3 device=cpu seed=${SEED:-0} transfer.episodes=20 transfer.every_round=true \
  "proprio_semantics=[hand_x,hand_y,hand_z,gripper]" run_strategies=[$STRAT] budget=50 per_round=10 segment_length=20 \
  data.episodes=60 data.test_episodes=5 mapper.members=3 mapper.encoder.channels=[16,16,16,16] trainer.batch_size=32 \
  trainer.optim.lr=2e-3 train_schedule.steps=$STEPS "$@"
