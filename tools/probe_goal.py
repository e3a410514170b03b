"""Can an image encoder read the multimodal task's goal position from the camera picture, and how precisely?

Renders ``--frames`` pictures of the multimodal task (random start and goal per reset, the agent moved to a
random point of its path so it is seen anywhere), then trains the small conv encoder (conf/encoder/small_cnn.yaml's
architecture) + a linear head to regress the goal's xy (metres) with MSE, and prints the held-out error in cm
and the share of held-out pictures read within 3 cm and within the goal radius. Supervised regression is the
most direct signal an encoder can get: if it cannot read the goal precisely here, a policy trained on the
denoising loss cannot either.

``--policy-run RUN_DIR`` instead probes a trained image policy: its (frozen, EMA) encoder of the ``top`` camera
gives each picture's features and a least-squares linear map from them to the goal is fitted on the training
pictures (it also prints the share of the features' variance that the goal explains linearly) (``--policy-run random`` does the same with a freshly initialised encoder, the reference): this says
whether the policy's own features hold the goal's position.

Camera settings are overridden on the scene's ``top`` camera: ``--cam-z`` (height, m) and ``--fovy`` (degrees).
Example (docs/results/visuomotor.md):
    OMP_NUM_THREADS=1 MUJOCO_GL=egl python tools/probe_goal.py --camera-size 84 --cam-z 3.0 --fovy 42 --steps 400
"""

from __future__ import annotations

import argparse
import time

import mujoco
import numpy as np
import torch

from robopolicy.defaults import constructor_kwargs, group_config
from robopolicy.envs import make_task
from robopolicy.nets.augment import random_shift
from robopolicy.nets.encoders import SmallConvEncoder


def render_frames(n: int, size: int, cam_z: float | None, fovy: float | None, seed: int,
                  n_goals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> images (n, size, size, 3) uint8, goals (n, 2) float32 (metres).

    n_goals: the pictures cycle through this many episodes' goals (as a store of n_goals demonstrations
    does); None = a new goal in every picture.
    """
    task = make_task(group_config("task", "multimodal", {"obs": "visuomotor", "cameras": ["top"], "camera_size": size}))
    env = task.make_env()
    cam = env.model.camera("top")
    if cam_z is not None:
        env.model.cam_pos[cam.id, 2] = cam_z
    if fovy is not None:
        env.model.cam_fovy[cam.id] = fovy
    rng = np.random.default_rng(seed)
    imgs, goals = np.zeros((n, size, size, 3), np.uint8), np.zeros((n, 2), np.float32)
    seeds = rng.integers(1 << 30, size=n if n_goals is None else n_goals)
    for i in range(n):
        env.reset(seed=int(seeds[i % len(seeds)]))
        # Put the agent anywhere on the region it travels through, as during an episode.
        env.data.qpos[:2] = rng.uniform([-0.7, -0.8], [0.7, 0.8])
        mujoco.mj_forward(env.model, env.data)
        imgs[i] = env._rig.render(env.data)["top"]
        goals[i] = env.goal
    env._rig.close()
    return imgs, goals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--camera-size", type=int, default=84)
    ap.add_argument("--cam-z", type=float, default=None, help="top camera height (m); default: the scene's")
    ap.add_argument("--fovy", type=float, default=None, help="top camera vertical field of view (deg); default: the scene's")
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--train-goals", type=int, default=None,
                    help="distinct goals among the training pictures (a store of that many demos); default: all new")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--shift-px", type=int, default=0, help="random-shift augmentation in training, as in the policy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy-run", default=None, help="run_dir of an image policy (or 'random'): linear probe of its frozen features")
    ap.add_argument("--checkpoint", default="last")
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    n_test = args.frames // 5
    # Held-out pictures always have goals of their own, never seen in training.
    te_imgs, te_goals = render_frames(n_test, args.camera_size, args.cam_z, args.fovy, args.seed + 1)
    tr_imgs, tr_goals = render_frames(args.frames - n_test, args.camera_size, args.cam_z, args.fovy, args.seed, args.train_goals)
    imgs, goals = np.concatenate([te_imgs, tr_imgs]), np.concatenate([te_goals, tr_goals])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255.0)
    y = torch.from_numpy(goals)
    mean, std = y[n_test:].mean(0), y[n_test:].std(0)
    x_tr, y_tr, x_te, y_te = x[n_test:], (y[n_test:] - mean) / std, x[:n_test], y[:n_test]

    enc = SmallConvEncoder((args.camera_size, args.camera_size, 3), **constructor_kwargs(group_config("encoder", "small_cnn").rgb))
    if args.policy_run is not None:
        return linear_probe(args, enc, x_tr, y_tr, x_te, y_te, mean, std, t0)
    head = torch.nn.Linear(enc.out_dim, 2)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    t_render = time.perf_counter() - t0
    for _step in range(args.steps):
        idx = torch.randint(0, len(x_tr), (args.batch,), generator=gen)
        xb = x_tr[idx]
        if args.shift_px > 0:
            xb = random_shift(xb[:, None], args.shift_px, generator=gen)[:, 0]
        loss = torch.nn.functional.mse_loss(head(enc(xb)), y_tr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    enc.eval()
    with torch.no_grad():
        pred = torch.cat([head(enc(x_te[i:i + 256])) for i in range(0, n_test, 256)]) * std + mean
    report(args, pred, y_te, mean, time.perf_counter() - t0 - t_render, t_render)


def linear_probe(args, enc, x_tr, y_tr, x_te, y_te, mean, std, t0) -> None:
    """Least-squares linear map from frozen features (a trained policy's encoder, or ``enc`` untrained) to the goal."""
    if args.policy_run != "random":
        import robopolicy

        policy = robopolicy.load(args.policy_run, checkpoint=args.checkpoint, device="cpu")
        obs_enc = policy.obs_encoder
        enc = obs_enc.shared_rgb if obs_enc.shared else obs_enc.encoders["top"]
    enc.eval()
    t_fit = time.perf_counter()
    with torch.no_grad():
        def feats(x):
            f = torch.cat([enc(x[i:i + 256]) for i in range(0, len(x), 256)])
            return torch.cat([f, torch.ones(len(f), 1)], dim=1)  # + bias column
        f_tr, f_te = feats(x_tr), feats(x_te)
        w = torch.linalg.lstsq(f_tr.double(), y_tr.double()).solution.float()
        pred = (f_te @ w) * std + mean
        # How loud the goal is in the features: the share of their total variance a linear function of the goal
        # explains (the denoiser's FiLM layers read the features linearly).
        g_tr = torch.cat([y_tr, torch.ones(len(y_tr), 1)], dim=1).double()
        f = f_tr[:, :-1].double()
        resid = f - g_tr @ torch.linalg.lstsq(g_tr, f).solution
        share = 1.0 - float(resid.var(0).sum() / f.var(0).sum())
    report(args, pred, y_te, mean, time.perf_counter() - t_fit, t_fit - t0)
    print(f"share of the features' variance explained by the goal (linear): {share:.3f}")


def report(args, pred, y_te, mean, t_train: float, t_render: float) -> None:
    err_cm = (pred - y_te).norm(dim=1).numpy() * 100
    blind_cm = (y_te - mean).norm(dim=1).numpy() * 100  # always answering the mean goal
    px_cm = 2 * (args.cam_z or 3.0) * np.tan(np.radians((args.fovy or 42.0) / 2)) / args.camera_size * 100
    what = f"linear probe of {args.policy_run} ({args.checkpoint})" if args.policy_run else "trained encoder + linear head"
    print(f"{what}: camera_size={args.camera_size} cam_z={args.cam_z} fovy={args.fovy} ({px_cm:.2f} cm/px, goal disc "
          f"{20 / px_cm:.1f} px wide) frames={args.frames} train_goals={args.train_goals} steps={args.steps} batch={args.batch} shift_px={args.shift_px}")
    print(f"held-out goal error: median {np.median(err_cm):.2f} cm, p90 {np.percentile(err_cm, 90):.2f} cm; "
          f"within 3 cm {np.mean(err_cm < 3):.2f}, within 10 cm {np.mean(err_cm < 10):.2f}; "
          f"mean-goal guess: median {np.median(blind_cm):.2f} cm, within 10 cm {np.mean(blind_cm < 10):.2f}")
    print(f"time: render {t_render:.0f} s, fit {t_train:.0f} s")


if __name__ == "__main__":
    main()
