#!/usr/bin/env bash
# Meta-World push-v3, every strategy x seeds 0 1 2 in the recorded setting (conf/experiment/semantics_metaworld_push.yaml),
# two runs side by side (one torch thread each: a 2-core machine), resumable; then the figure with bands:
#   bash tools/semantics_metaworld_sweep.sh OUT [tools/semantics_sweep.py options] [-- more overrides]
#   python tools/semantics_sweep_plot.py --sweep OUT --out docs/results/semantics_metaworld_curves.png
# e.g. bash tools/semantics_metaworld_sweep.sh runs/mwsweep --strategies random_frames random_episodes diversity
set -ef
OUT=${1:?output folder}
shift
OPTS=() MORE=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do OPTS+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift && MORE=("$@")
PY=${PY:-python}
exec $PY "$(dirname "$0")/semantics_sweep.py" --out "$OUT" --jobs 2 "${OPTS[@]}" -- +experiment=semantics_metaworld_push "${MORE[@]}"
