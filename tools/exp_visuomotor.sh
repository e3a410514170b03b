#!/usr/bin/env bash
# Visuomotor experiments: policies from proprio + one camera, no privileged state.
# Run from the repository root (stages: mm, metaworld, queue, mwflat, mmdiag, mm2; mm and metaworld by default):
#   nohup bash tools/exp_visuomotor.sh mm        > experiments/vm/exp_mm.log 2>&1 &
#   nohup bash tools/exp_visuomotor.sh metaworld > experiments/vm/exp_mw.log 2>&1 &
# Results: docs/results/visuomotor.md. OMP_NUM_THREADS=1, CPU.
set -euo pipefail
export OMP_NUM_THREADS=1 MUJOCO_GL=egl
PY=${PY:-python}
OUT=${OUT:-experiments/vm}
STAGES=${*:-mm metaworld}
# nohup env ENVS='push-v3 pick-place-v3' POLICIES=beso bash tools/exp_visuomotor.sh queue > experiments/vm/exp_queue.log 2>&1 &
mkdir -p "$OUT"
COMMON=(policy=beso net=unet 'net.down_dims=[32,64,128]' +encoder@policy.encoder=small_cnn
        batch_size=32 optim.lr=3e-4 optim.warmup_steps=100 val_every=500 ckpt_every=500
        eval.every=0 final_eval.episodes=0 progress=false wandb.mode=disabled)
FLAT=("${COMMON[@]/small_cnn/small_cnn_flat}")   # the same with the flattened-map head (small_cnn_flat)

if [[ " $STAGES " == *" mm "* ]]; then
  # 1. The multimodal task from proprio (agent xy) + the top camera, 84 px; the goal is seen only in the image.
  [ -e "$OUT/mm_demos.zarr" ] || $PY -m robopolicy.cli.collect task=multimodal task.obs=visuomotor task.camera_size=84 \
      episodes=100 out="$OUT/mm_demos.zarr" progress=false
  $PY -m robopolicy.cli.train task=multimodal task.obs=visuomotor task.camera_size=84 "${COMMON[@]}" steps=${MM_STEPS:-1500} \
      dataset="$OUT/mm_demos.zarr" run_dir="$OUT/mm_beso"
  $PY -m robopolicy.cli.eval run_dir="$OUT/mm_beso" episodes=100 progress=false wandb.mode=disabled video_episodes=4
  # Continued to 3,000 steps in a copy (resume; the cosine schedule is rebuilt for the new total).
  [ -e "$OUT/mm_beso_3k" ] || { cp -r "$OUT/mm_beso" "$OUT/mm_beso_3k"; rm -rf "$OUT/mm_beso_3k/videos" "$OUT/mm_beso_3k/eval.json"; }
  $PY -m robopolicy.cli.train task=multimodal task.obs=visuomotor task.camera_size=84 "${COMMON[@]}" steps=3000 \
      dataset="$OUT/mm_demos.zarr" run_dir="$OUT/mm_beso_3k"
  $PY -m robopolicy.cli.eval run_dir="$OUT/mm_beso_3k" episodes=100 progress=false wandb.mode=disabled video_episodes=4
  # Without the random-shift augmentation, 1,200 steps.
  $PY -m robopolicy.cli.train task=multimodal task.obs=visuomotor task.camera_size=84 "${COMMON[@]}" policy.encoder.augment.shift_px=0 \
      val_every=400 ckpt_every=400 steps=1200 dataset="$OUT/mm_demos.zarr" run_dir="$OUT/mm_beso_noshift"
  $PY -m robopolicy.cli.eval run_dir="$OUT/mm_beso_noshift" episodes=100 progress=false wandb.mode=disabled video_episodes=4
fi

if [[ " $STAGES " == *" metaworld "* ]]; then
  # 2. Meta-World from proprio (hand xyz + gripper) + corner2 at 84 px, 10 scripted demos (DP3's setting).
  for ENV in ${ENVS:-drawer-close-v3 door-open-v3}; do
    TASK=(task=metaworld task.env_name=$ENV task.obs=visuomotor 'task.cameras=[corner2]' task.camera_size=84)
    [ -e "$OUT/${ENV}_demos.zarr" ] || $PY -m robopolicy.cli.collect "${TASK[@]}" episodes=10 out="$OUT/${ENV}_demos.zarr" progress=false
    $PY -m robopolicy.cli.train "${TASK[@]}" "${COMMON[@]}" steps=${MW_STEPS:-800} dataset="$OUT/${ENV}_demos.zarr" run_dir="$OUT/${ENV}_beso"
    $PY -m robopolicy.cli.eval run_dir="$OUT/${ENV}_beso" episodes=${MW_EPISODES:-100} progress=false wandb.mode=disabled \
        video_episodes=2 out="$OUT/${ENV}_beso/eval_standard.json"
    $PY -m robopolicy.cli.eval run_dir="$OUT/${ENV}_beso" episodes=${MW_EPISODES:-100} progress=false wandb.mode=disabled \
        video_episodes=2 task.fresh_positions=true out="$OUT/${ENV}_beso/eval_fresh.json"
  done
  # door-open-v3 was also continued to 1,600 steps in a copy (resume), then evaluated the same way.
  if [ -e "$OUT/door-open-v3_beso" ]; then
    R="$OUT/door-open-v3_beso_1600"
    [ -e "$R" ] || { cp -r "$OUT/door-open-v3_beso" "$R"; rm -rf "$R/videos" "$R"/eval_*.json; }
    TASK=(task=metaworld task.env_name=door-open-v3 task.obs=visuomotor 'task.cameras=[corner2]' task.camera_size=84)
    $PY -m robopolicy.cli.train "${TASK[@]}" "${COMMON[@]}" steps=1600 dataset="$OUT/door-open-v3_demos.zarr" run_dir="$R"
    $PY -m robopolicy.cli.eval run_dir="$R" episodes=100 progress=false wandb.mode=disabled video_episodes=2 out="$R/eval_standard.json"
    $PY -m robopolicy.cli.eval run_dir="$R" episodes=100 progress=false wandb.mode=disabled video_episodes=2 \
        task.fresh_positions=true out="$R/eval_fresh.json"
  fi
fi

if [[ " $STAGES " == *" queue "* ]]; then
  # 3. The same Meta-World setting as above for more tasks (ENVS) and policies (POLICIES: beso and/or diffusion,
  #    Diffusion Policy = DDPM training, DDIM-10 sampling, the same net, encoder and budget). Each run trains in the
  #    foreground; its two 100-episode evaluations run in the background while the next run trains.
  for ENV in ${ENVS:-push-v3 pick-place-v3}; do
    for POL in ${POLICIES:-beso}; do
      TASK=(task=metaworld task.env_name=$ENV task.obs=visuomotor 'task.cameras=[corner2]' task.camera_size=84)
      R="$OUT/${ENV}_${POL}"
      [ -e "$OUT/${ENV}_demos.zarr" ] || $PY -m robopolicy.cli.collect "${TASK[@]}" episodes=10 out="$OUT/${ENV}_demos.zarr" progress=false
      $PY -m robopolicy.cli.train "${TASK[@]}" "${COMMON[@]/policy=beso/policy=$POL}" steps=${MW_STEPS:-800} \
          dataset="$OUT/${ENV}_demos.zarr" run_dir="$R"
      wait  # the previous run's evaluations
      EVAL=($PY -m robopolicy.cli.eval run_dir="$R" episodes=100 progress=false wandb.mode=disabled video_episodes=2)
      if [ "${EVAL_PARALLEL:-0}" = 1 ]; then  # the two evaluations side by side (for the last run of a queue)
        "${EVAL[@]}" out="$R/eval_standard.json" > "$R/eval.log" 2>&1 &
        "${EVAL[@]}" task.fresh_positions=true out="$R/eval_fresh.json" > "$R/eval_fresh.log" 2>&1 &
      else
        { "${EVAL[@]}" out="$R/eval_standard.json"; "${EVAL[@]}" task.fresh_positions=true out="$R/eval_fresh.json"; } \
            > "$R/eval.log" 2>&1 &
      fi
    done
  done
  wait
fi

if [[ " $STAGES " == *" mwflat "* ]]; then
  # 5. Meta-World with the flattened-map head (small_cnn_flat) that solved the multimodal task: the metaworld stage's
  #    recipe, 800 steps (ENVS, default door-open-v3). MW_STEPS=3000 TAG=_3000: a longer budget in its own run folder;
  #    POL=diffusion: Diffusion Policy (DDPM training, DDIM-10 sampling) with the same head, net and budget.
  #    EXTRA="policy.encoder.augment.shift_px=0": more train overrides (space-separated).
  POL=${POL:-beso}
  read -ra EXTRA_ARGS <<< "${EXTRA:-}"
  for ENV in ${ENVS:-door-open-v3}; do
    TASK=(task=metaworld task.env_name=$ENV task.obs=visuomotor 'task.cameras=[corner2]' task.camera_size=84)
    R="$OUT/${ENV}_${POL}_flat${TAG:-}"
    [ -e "$OUT/${ENV}_demos.zarr" ] || $PY -m robopolicy.cli.collect "${TASK[@]}" episodes=10 out="$OUT/${ENV}_demos.zarr" progress=false
    $PY -m robopolicy.cli.train "${TASK[@]}" "${FLAT[@]/policy=beso/policy=$POL}" steps=${MW_STEPS:-800} "${EXTRA_ARGS[@]}" \
        dataset="$OUT/${ENV}_demos.zarr" run_dir="$R"
    EVAL=($PY -m robopolicy.cli.eval run_dir="$R" episodes=100 progress=false wandb.mode=disabled video_episodes=2)
    "${EVAL[@]}" out="$R/eval_standard.json"
    "${EVAL[@]}" task.fresh_positions=true out="$R/eval_fresh.json"
  done
fi

if [[ " $STAGES " == *" mmdiag "* ]]; then
  # 4. Multimodal diagnosis: no shift + lr 1e-3 from the image, and the same budget from the privileged state.
  [ -e "$OUT/mm_demos.zarr" ] || $PY -m robopolicy.cli.collect task=multimodal task.obs=visuomotor task.camera_size=84 \
      episodes=100 out="$OUT/mm_demos.zarr" progress=false
  $PY -m robopolicy.cli.train task=multimodal task.obs=visuomotor task.camera_size=84 "${COMMON[@]}" optim.lr=1e-3 \
      policy.encoder.augment.shift_px=0 val_every=400 ckpt_every=400 steps=1200 dataset="$OUT/mm_demos.zarr" run_dir="$OUT/mm_beso_lr1e-3"
  $PY -m robopolicy.cli.eval run_dir="$OUT/mm_beso_lr1e-3" episodes=100 progress=false wandb.mode=disabled video_episodes=4
  $PY tools/probe_goal.py --frames 3000 --train-goals 95 --policy-run "$OUT/mm_beso_lr1e-3" --checkpoint step_400
  # The same 100 episodes (collect seed block 0) from the privileged state: agent xy, velocity, true goal xy.
  [ -e "$OUT/mm_demos_state.zarr" ] || $PY -m robopolicy.cli.collect task=multimodal task.obs=state episodes=100 \
      out="$OUT/mm_demos_state.zarr" progress=false
  STATE_COMMON=(); for a in "${COMMON[@]}"; do [[ $a == +encoder@* ]] || STATE_COMMON+=("$a"); done  # no image encoder
  $PY -m robopolicy.cli.train task=multimodal task.obs=state "${STATE_COMMON[@]}" optim.lr=1e-3 \
      val_every=400 ckpt_every=400 steps=1200 dataset="$OUT/mm_demos_state.zarr" run_dir="$OUT/mm_state_control"
  $PY -m robopolicy.cli.eval run_dir="$OUT/mm_state_control" episodes=100 progress=false wandb.mode=disabled video_episodes=0
fi

if [[ " $STAGES " == *" mm2 "* ]]; then
  # 5. The multimodal task from images alone, issue 14: the encoder's head. mmdiag's image run (lr 1e-3, no shift,
  #    1,200 steps, 100 demos) with the flattened-map head (small_cnn_flat) instead of spatial-softmax keypoints,
  #    seeds 0 and 1 (1,200 steps; seed 1 also continued to 2,400), seed 2 (2,400 steps); and the keypoint screens
  #    (500 demos; batch 64). Every image run: 100 evaluation episodes (seed block 3) but the 500-demo screen (50).
  MM=(task=multimodal task.obs=visuomotor task.camera_size=84)
  [ -e "$OUT/mm_demos.zarr" ] || $PY -m robopolicy.cli.collect "${MM[@]}" episodes=100 out="$OUT/mm_demos.zarr" progress=false
  [ -e "$OUT/mm_demos500.zarr" ] || $PY -m robopolicy.cli.collect "${MM[@]}" episodes=500 out="$OUT/mm_demos500.zarr" progress=false
  LR3=(optim.lr=1e-3 policy.encoder.augment.shift_px=0 val_every=400 ckpt_every=400 steps=1200)
  for SEED in 0 1; do
    R="$OUT/mm2_flat"; [ $SEED = 0 ] || R="$OUT/mm2_flat_seed$SEED"
    $PY -m robopolicy.cli.train "${MM[@]}" "${FLAT[@]}" "${LR3[@]}" seed=$SEED dataset="$OUT/mm_demos.zarr" run_dir="$R"
    $PY -m robopolicy.cli.eval run_dir="$R" episodes=100 progress=false wandb.mode=disabled video_episodes=0
  done
  # Seed 1 continued to 2,400 steps in a copy (resume; the cosine schedule is rebuilt for the new total).
  R="$OUT/mm2_flat_seed1_2400"
  [ -e "$R" ] || { cp -r "$OUT/mm2_flat_seed1" "$R"; rm -f "$R/eval.json"; }
  $PY -m robopolicy.cli.train "${MM[@]}" "${FLAT[@]}" "${LR3[@]}" seed=1 steps=2400 dataset="$OUT/mm_demos.zarr" run_dir="$R"
  $PY -m robopolicy.cli.eval run_dir="$R" episodes=100 progress=false wandb.mode=disabled video_episodes=0
  # Seed 2, 2,400 steps from scratch (the recipe).
  $PY -m robopolicy.cli.train "${MM[@]}" "${FLAT[@]}" "${LR3[@]}" seed=2 steps=2400 dataset="$OUT/mm_demos.zarr" \
      run_dir="$OUT/mm2_flat_seed2_2400"
  $PY -m robopolicy.cli.eval run_dir="$OUT/mm2_flat_seed2_2400" episodes=100 progress=false wandb.mode=disabled video_episodes=0
  $PY -m robopolicy.cli.train "${MM[@]}" "${COMMON[@]}" "${LR3[@]}" batch_size=64 dataset="$OUT/mm_demos.zarr" run_dir="$OUT/mm2_b64"
  $PY -m robopolicy.cli.eval run_dir="$OUT/mm2_b64" episodes=100 progress=false wandb.mode=disabled video_episodes=0
  $PY -m robopolicy.cli.train "${MM[@]}" "${COMMON[@]}" "${LR3[@]}" dataset="$OUT/mm_demos500.zarr" run_dir="$OUT/mm2_d500"
  $PY -m robopolicy.cli.eval run_dir="$OUT/mm2_d500" episodes=50 progress=false wandb.mode=disabled video_episodes=0 \
      out="$OUT/mm2_d500/eval50.json"
  for R in mm2_flat mm2_flat_seed1 mm2_b64 mm2_d500; do  # the goal in each policy's frozen features (+ the share of their variance)
    $PY tools/probe_goal.py --frames 3000 --train-goals 95 --policy-run "$OUT/$R"
  done
fi
