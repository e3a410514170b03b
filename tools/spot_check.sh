#!/usr/bin/env bash
# Same seeds, same results? A tiny quick start and a tiny V-GPS experiment (tools/vgps_experiment.py at
# --quick scale: mixed reach-v3 data, BESO on an MLP, IQL and Cal-QL critics, base / V-GPS K=1,4 / random K=4) run with the code
# of CODE_ROOT; the per-episode successes, seeds and final losses go to OUT/spot.json. Run it for two trees
# and compare the two files:
#   tools/spot_check.sh /work/wt/typedcfg-base /tmp/spot_base
#   tools/spot_check.sh "$PWD" /tmp/spot_new
#   diff /tmp/spot_base/spot.json /tmp/spot_new/spot.json && echo identical
# A third argument, the OUT_DIR of an earlier run (e.g. of the other tree), also re-evaluates that run's
# trained policy and critics with this code (V-GPS K=4 with each critic, the same seeds) into OUT/cross_<critic>.json:
# runs saved by one version must load and score the same in the other.
#   tools/spot_check.sh "$PWD" /tmp/spot_new /tmp/spot_base
# PYTHON (default: python) is the interpreter; the code tree is put first on PYTHONPATH. Minutes on a CPU.
set -euo pipefail
CODE=$(cd "${1:?usage: tools/spot_check.sh CODE_ROOT OUT_DIR [EARLIER_OUT_DIR]}" && pwd)
OTHER=${3:-}
OUT=${2:?usage: tools/spot_check.sh CODE_ROOT OUT_DIR}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python}
export OMP_NUM_THREADS=1 MUJOCO_GL=egl PYTHONPATH="$CODE" WANDB_MODE=disabled
cd "$CODE"

nice -n 10 "$PY" -m robopolicy.cli.quickstart out_dir="$OUT/qs" demos=6 steps=200 batch_size=32 ckpt_every=200 val_every=100 \
  eval.every=100 eval.episodes=2 eval.video_episodes=0 final_eval.episodes=6 final_eval.video_episodes=0 \
  task.max_episode_steps=100 wandb.mode=disabled progress=false > "$OUT/quickstart.log" 2>&1
nice -n 10 "$PY" tools/vgps_experiment.py --out "$OUT/vgps" --tasks reach-v3 --policies beso \
  --episodes 20 --policy-steps 500 --critic-steps 200 --batch-size 32 --eval-episodes 10 --ks 1 4 --random-ks 4 --max-steps 100 \
  --device cpu --policy-overrides net=mlp > "$OUT/vgps.log" 2>&1

if [ -n "$OTHER" ]; then
  for critic in calql iql; do
    nice -n 10 "$PY" -m robopolicy.cli.eval run_dir="$OTHER/vgps/runs/reach-v3_beso" episodes=10 seed=50000 max_episode_steps=100 \
      steer=vgps steer.critic="$OTHER/vgps/runs/reach-v3_$critic" steer.k=4 steer.beta=0 out="$OUT/cross_$critic.json" \
      device=cpu progress=false wandb.mode=disabled > "$OUT/cross_$critic.log" 2>&1
    "$PY" - "$OUT/cross_$critic.json" "$OTHER/vgps/evals/reach-v3/beso/${critic}_k4/eval.json" "$critic" <<'PY'
import json, sys
a, b = (json.loads(open(p).read()) for p in sys.argv[1:3])
same = {k: a[k] == b[k] for k in ("successes", "seeds", "mean_return", "episode_lengths")}
print(f"cross-load {sys.argv[3]} K=4 (earlier runs, this code):", same, a["successes"])
PY
  done
fi

"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
keep = ("success_rate", "successes", "seeds", "episodes", "mean_return", "episode_lengths")
res = {}
s = json.loads((out / "qs" / "run" / "summary.json").read_text())
res["quickstart"] = {"train/loss": s.get("train/loss"), "val/loss": s.get("val/loss"),
                     "eval/success_rate_max": s.get("eval/success_rate_max"),
                     "final": {k: s["final"][k] for k in keep if k in s.get("final", {})}}
for f in sorted((out / "vgps" / "evals").rglob("eval.json")):
    r = json.loads(f.read_text())
    res["vgps/" + str(f.parent.relative_to(out / "vgps" / "evals"))] = {k: r[k] for k in keep if k in r}
for f in sorted((out / "vgps" / "runs").glob("*/summary.json")):
    r = json.loads(f.read_text())
    res["train/" + f.parent.name] = {k: r.get(k) for k in ("train/loss", "val/loss", "step")}
(out / "spot.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
print(json.dumps({k: v.get("successes", v.get("final", {}).get("successes")) for k, v in res.items()}))
PY
