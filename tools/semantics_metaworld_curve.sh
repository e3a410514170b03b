#!/usr/bin/env bash
# Meta-World push-v3 active-learning curve, one strategy, one seed, in the recorded setting
# (conf/experiment/semantics_metaworld_push.yaml; docs/results/semantics_metaworld.md):
#   bash tools/semantics_metaworld_curve.sh RUN_DIR STRATEGY [STEPS] [more overrides]
# e.g. SEED=1 bash tools/semantics_metaworld_curve.sh experiments/mwreach/variance variance 6000
# The offline data, held-out data, reference and VAE latents are shared through cache_dir (RUN_DIR/../cache).
# Every strategy and seed of it at once: tools/semantics_metaworld_sweep.sh.
set -ef   # -f: the overrides hold brackets, never globs
RUN=${1:?run dir}
STRAT=${2:?strategy: random_frames | random_episodes | diversity | variance | hybrid}
STEPS=${3:-6000}   # per round, every strategy: 1,500 under-trains the mapper here (semantics_metaworld.md)
shift $(( $# < 3 ? $# : 3 ))
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MUJOCO_GL=${MUJOCO_GL:-egl}
$PY -m robopolicy.cli.semantics +experiment=semantics_metaworld_push mode=active run_dir="$RUN" \
  cache_dir="$(dirname "$RUN")/cache" seed=${SEED:-0} run_strategies=[$STRAT] train_schedule.steps=$STEPS "$@"
