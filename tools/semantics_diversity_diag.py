"""What VAE-latent diversity selects on planar push, against random episodes, and how good the VAE is.

    nice -n 10 env OMP_NUM_THREADS=1 python tools/semantics_diversity_diag.py --out runs/divdiag vae_trainer.steps=400

Collects the offline real data and trains the VAE as ``mode=active`` does (cached in ``<out>/cache.npz``
and ``<out>/vae``), then, without training any mapper (diversity does not look at the mapper):
- VAE quality: reconstruction MSE per pixel (whole image and the pixels that change within an
  episode, i.e. where pusher and puck move), and how much of the true semantics a linear read-out
  of the latents explains (R^2 on held-out episodes);
- how the latent variance splits between episodes (camera pose, lighting: constant within one) and
  within episodes (the moving pusher and puck);
- for the old and the fixed diversity rule and for random episodes (5 seeds): annotated episodes,
  the share of labelled frames in the approach phase (t < segment length), the camera-jitter
  magnitude of the annotated episodes against all, and the coverage of the true semantics (mean
  distance of every frame's pusher / puck position to the nearest labelled frame's, cm).
Prints one table; writes ``<out>/diag_<vae settings>.json``.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402


def _diversity_before_fix(latents, episode_of, labeled, k, segment_length):
    """The rule before the fix (kept here for the comparison): episodes scored by their unlabelled frames, re-pickable."""
    from robopolicy.semantics import acquisition as acq

    labeled = np.asarray(labeled, bool).copy()
    episodes = np.unique(episode_of)
    out = []
    for _ in range(int(k)):
        ref = latents[labeled] if labeled.any() else latents.mean(0, keepdims=True)
        d = acq.min_distances(latents, ref)
        score = np.array([d[(episode_of == e) & ~labeled].mean() if ((episode_of == e) & ~labeled).any() else -np.inf
                          for e in episodes])
        start = None
        while start is None and np.isfinite(score).any():
            best = int(np.argmax(score))
            frames = np.flatnonzero(episode_of == episodes[best])
            start = acq.widest_segment(latents[frames], segment_length, labeled[frames])
            score[best] = -np.inf
        if start is None:
            break
        out.append(int(frames[start]))
        labeled[acq.segment_cover(int(frames[start]), episode_of, segment_length)] = True
    return np.asarray(out, dtype=int)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/semantics_diversity_diag")
    ap.add_argument("--random-seeds", type=int, default=5)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.envs import make_task
    from robopolicy.semantics import acquisition as acq
    from robopolicy.semantics.data import collect_real_episodes
    from robopolicy.semantics.vae import train_vae
    from robopolicy.utils import atomic_write_json

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=list(args.overrides))
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache.npz"
    d = cfg.data
    task = make_task(cfg.task)
    real = dict(cfg.real_env)
    if cache.exists():
        z = np.load(cache)
        frames, sem, episode_of, t_of = z["frames"], z["sem"], z["episode_of"], z["t_of"]
    else:
        data, truths = collect_real_episodes(task, real, int(d.episodes), int(d.seed), float(d.behaviour_noise),
                                              reach_steps=int(d.reach_steps))
        frames, sem, episode_of, t_of = np.concatenate(data.images), np.concatenate(truths), data.episode_of, data.t_of
        np.savez(cache, frames=frames, sem=sem, episode_of=episode_of, t_of=t_of)
    import torch

    tag = f"beta{cfg.vae.beta}_steps{cfg.vae_trainer.steps}_z{cfg.vae.latent_dim}_seed{cfg.seed}"
    vae_dir = out / f"vae_{tag}"
    if (vae_dir / "checkpoints").exists():  # trained before: load it
        from robopolicy.semantics.vae import ConvVAE
        from robopolicy.training import find_checkpoint, load_weights

        vae = ConvVAE(**OmegaConf.to_container(cfg.vae, resolve=True))
        load_weights(vae, find_checkpoint(vae_dir, "last") / "model.safetensors", what="VAE")
        vae.eval()
    else:
        vae = train_vae(frames, cfg.vae, cfg.vae_trainer, vae_dir, seed=int(cfg.seed))
    lat = vae.latents(frames)
    with torch.no_grad():
        rec = np.concatenate([vae.decode(vae.encode(torch.as_tensor(frames[i:i + 512]))[0]).permute(0, 2, 3, 1).numpy()
                              for i in range(0, len(frames), 512)])
    x = frames.astype(np.float32) / 255.0
    err = ((rec - x) ** 2).mean(-1)                                   # (N, H, W)
    # Pixels that move within an episode: far from that episode's mean image (pusher, puck).
    ep_mean = np.stack([x[episode_of == e].mean(0) for e in np.unique(episode_of)])[episode_of]
    moving = np.abs(x - ep_mean).max(-1) > 0.15
    res: dict = {"frames": int(len(frames)), "episodes": int(len(np.unique(episode_of))),
                 "vae_rec_mse_per_pixel": float(err.mean()), "vae_rec_mse_moving_pixels": float(err[moving].mean()),
                 "moving_pixel_share": float(moving.mean()),
                 "baseline_mse_episode_mean_image_moving": float(((ep_mean - x) ** 2).mean(-1)[moving].mean())}
    # Linear read-out of semantics from the latents, held-out episodes.
    eps = np.unique(episode_of)
    test = np.isin(episode_of, eps[::5])
    A = np.c_[lat, np.ones(len(lat))]
    w, *_ = np.linalg.lstsq(A[~test], sem[~test], rcond=None)
    resid = sem[test] - A[test] @ w
    res["latent_linear_r2_per_dim"] = (1 - resid.var(0) / sem[test].var(0)).round(3).tolist()
    between = np.stack([lat[episode_of == e].mean(0) for e in eps])[episode_of]
    res["latent_between_episode_var_share"] = float(((between - lat.mean(0)) ** 2).sum() / ((lat - lat.mean(0)) ** 2).sum())
    # Camera jitter per episode, regenerated from the real env's look generator (see real_env.reset).
    jit = []
    for i in range(int(d.episodes)):
        r = np.random.default_rng([int(d.seed) + i, 7])
        pos = r.uniform(-1, 1, 3) * float(real["camera_jitter_m"])
        yaw = r.uniform(-1, 1) * float(real["camera_yaw_jitter_rad"])
        jit.append(np.linalg.norm(pos[:2]) / float(real["camera_jitter_m"]) + abs(yaw) / float(real["camera_yaw_jitter_rad"]))
    jit = np.asarray(jit)
    seg, budget, per_round = int(cfg.segment_length), int(cfg.budget), int(cfg.per_round)

    def summary(picks):
        lab = np.zeros(len(lat), bool)
        for f in picks:
            lab[acq.segment_cover(int(f), episode_of, seg)] = True
        chosen = np.unique(episode_of[picks])
        cover = []
        for j in (slice(0, 2), slice(2, 4)):
            dd = np.sqrt(((sem[:, None, j] - sem[None, lab][:, :, j]) ** 2).sum(-1)).min(1)
            cover.append(100 * float(dd.mean()))
        return {"annotated_episodes": int(len(chosen)), "labelled_frames": int(lab.sum()),
                "approach_share": float((t_of[lab] < seg).mean()), "all_approach_share": float((t_of < seg).mean()),
                "pick_t_mean": float(t_of[picks].mean()), "jitter_chosen": float(jit[chosen].mean()), "jitter_all": float(jit.mean()),
                "coverage_pusher_cm": cover[0], "coverage_puck_cm": cover[1]}

    def rounds(select):
        return acq.picks_in_rounds(select, episode_of, budget, per_round, seg)

    res["diversity"] = summary(rounds(lambda lab, k, p: acq.diversity_episodes(lat, episode_of, lab, k, seg, annotated=p)))
    res["diversity_before_fix"] = summary(rounds(lambda lab, k, p: _diversity_before_fix(lat, episode_of, lab, k, seg)))
    rs = []
    for s in range(args.random_seeds):
        rng = np.random.default_rng(s)
        rs.append(summary(rounds(lambda lab, k, p: acq.random_episodes(
            episode_of, t_of, np.unique(episode_of[p]) if len(p) else np.zeros(0, int), k, seg, rng))))  # noqa: B023 (called at once)
    res["random_episodes_mean_over_seeds"] = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
    atomic_write_json(out / f"diag_{tag}.json", res)
    print(f"command: python tools/semantics_diversity_diag.py {' '.join(sys.argv[1:])}")
    for k, v in res.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
