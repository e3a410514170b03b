#!/usr/bin/env bash
# First measured point of image-to-semantics on Meta-World push-v3 (docs/results/semantics_metaworld.md):
# random frames vs ensemble variance at one budget, 1 seed, the scripted expert through the mapper;
# then a state-trained BESO policy through the variance mapper and on true semantics.
#   bash tools/semantics_metaworld_point.sh RUN_DIR BESO_RUN_DIR
# BESO_RUN_DIR "-" skips the BESO transfer. EXTRA: more overrides for every call (word-split), e.g.
#   EXTRA="proprio_semantics=[hand_x,hand_y,hand_z,gripper]" bash tools/semantics_metaworld_point.sh RUN_DIR -
set -euo pipefail
RUN=${1:?run dir}
BESO=${2:?a robopolicy-train run on task=metaworld task.env_name=push-v3 with state obs, or - to skip its transfer}
PY=${PY:-python}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
COMMON=(task=metaworld task.env_name=push-v3 device=cpu seed=0 transfer.episodes=20 transfer.every_round=false
  "${EXTRA_ARGS[@]}")
$PY -m robopolicy.cli.semantics mode=active run_dir="$RUN" "${COMMON[@]}" run_strategies=[random_frames,variance] \
  budget=20 per_round=10 segment_length=10 data.episodes=30 data.test_episodes=5 mapper.members=3 \
  train_schedule.steps=300
[ "$BESO" = - ] && exit 0
$PY -m robopolicy.cli.semantics mode=transfer run_dir="$RUN/beso" "${COMMON[@]}" mapper_dir="$RUN/variance/round_01" \
  transfer.policy_run_dir="$BESO"
