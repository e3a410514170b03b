"""Before/after check of the episode protocol: the same seeds must give the same stores and evaluations.

    # on the old code, then on the new one:
    PYTHONPATH=<tree> python tools/check_episode_protocol.py dump OUT_DIR
    python tools/check_episode_protocol.py compare OLD_DIR NEW_DIR
    python tools/check_episode_protocol.py overhead     # the end rule's cost per vectorised step
    PYTHONPATH=<tree> python tools/check_episode_protocol.py speed   # vectorised evaluation env steps/s

``dump`` collects 3 episodes of the multimodal task (plain, and with action noise and a failing
episode) into zarr stores and evaluates a stochastic goal-seeking sampler (its noise from torch's
generator, so the evaluation's seeding is exercised) on 6 episodes with 1 and 2 environments,
writing every per-episode figure to ``eval.json``. ``compare`` prints whether every stored array
and every per-episode figure is identical, and exits 1 when one differs. ``overhead`` times the
shared end rule (``end_codes``) per batched step against the plain flag test the vectorised
loop used before, for 1, 4 and 16 environments. ``speed`` prints the env steps/s of the vectorised
evaluation (the sampler above, 16 episodes, 4 sync environments, median of 3 runs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

RECIPES = {"plain": dict(episodes=3, seed=0), "noisy": dict(episodes=3, seed=1, noise=0.2, fail_fraction=0.34)}
EVAL_KEYS = ("successes", "returns", "episode_lengths", "seeds", "episode_modes")


def _sampler(spec):
    from robopolicy.policies.base import ChunkSampler

    class GoalSeeker(ChunkSampler):
        """Goes round the block to the goal, jittered: state (6,) = xy, vxy, goal xy."""

        def __init__(self):
            super().__init__(spec, ["state"], obs_horizon=2, action_horizon=10, exec_horizon=4)

        def sample(self, obs, n=1, goal=None):
            s = torch.as_tensor(np.asarray(obs["state"]))[:, -1].float()  # (B, 6)
            # Below the block (half-size 0.4 x 0.15 at the origin): head for a point beside it, on the
            # side the agent is on, jittered; above it: for the goal. Noise: sometimes too short.
            jitter = 0.3 * torch.randn(s.shape[0], n, 2)
            side = torch.where(s[:, 0:1] >= 0, 0.55, -0.55) * torch.tensor([1.0, 0.0])
            target = torch.where(s[:, 1:2] < 0.2, side, s[:, 4:6])[:, None] + jitter  # (B, n, 2)
            a = (4.0 * (target - s[:, None, 0:2]))[:, :, None, :]  # (B, n, 1, 2)
            return a.expand(-1, -1, self.action_horizon - self.obs_horizon + 1, -1).clamp(-1, 1)

    return GoalSeeker()


def dump(out: Path) -> None:
    from robopolicy.collect import collect
    from robopolicy.envs.multimodal import MultimodalTask
    from robopolicy.evaluation import evaluate_policy

    out.mkdir(parents=True, exist_ok=True)
    task = MultimodalTask()
    for name, recipe in RECIPES.items():
        collect(task, out=out / f"{name}.zarr", progress=False, overwrite=True, **recipe)
    policy = _sampler(task.spec)
    evals = {}
    for num_envs in (1, 2):
        r = evaluate_policy(policy, task, episodes=6, seed=3, num_envs=num_envs, progress=False)
        evals[f"num_envs={num_envs}"] = {k: r.get(k) for k in EVAL_KEYS}
    (out / "eval.json").write_text(json.dumps(evals, indent=1))
    print(f"wrote {out}")


def compare(old: Path, new: Path) -> int:
    from robopolicy.data.store import EpisodeStore

    bad = 0
    for name in RECIPES:
        a, b = EpisodeStore.open(old / f"{name}.zarr"), EpisodeStore.open(new / f"{name}.zarr")
        same = a.keys == b.keys and np.array_equal(a.episode_ends, b.episode_ends)
        same = same and all(np.array_equal(a.get(k), b.get(k)) for k in a.keys)
        print(f"store {name}: {a.n_episodes} episodes, {a.n_steps} steps, keys {a.keys}: {'identical' if same else 'DIFFERENT'}")
        bad += not same
    ea, eb = json.loads((old / "eval.json").read_text()), json.loads((new / "eval.json").read_text())
    for run in ea:
        for k in EVAL_KEYS:
            same = ea[run][k] == eb[run][k]
            print(f"eval {run} {k}: {ea[run][k] if k == 'successes' else ''} {'identical' if same else 'DIFFERENT'}")
            bad += not same
    return 1 if bad else 0


def overhead(calls: int = 20_000) -> None:
    import time

    from robopolicy.evaluation.episodes import end_codes

    for b in (1, 4, 16):
        rng = np.random.default_rng(0)
        lengths, succ_steps = rng.integers(0, 100, b), rng.integers(0, 2, b)
        term, trunc = rng.random(b) < 0.01, rng.random(b) < 0.01
        t0 = time.perf_counter()
        for _ in range(calls):
            end_codes(lengths, succ_steps, term, trunc, 0, 500)
        rule_us = (time.perf_counter() - t0) / calls * 1e6
        t0 = time.perf_counter()
        for _ in range(calls):
            ~((succ_steps > 0) | term | trunc)
        flags_us = (time.perf_counter() - t0) / calls * 1e6
        print(f"num_envs={b:2d}: end rule {rule_us:.1f} us per batched step, plain flags {flags_us:.1f} us")


def speed() -> None:
    from robopolicy.envs.multimodal import MultimodalTask
    from robopolicy.evaluation import evaluate_policy

    task = MultimodalTask()
    policy = _sampler(task.spec)
    rates = [evaluate_policy(policy, task, episodes=16, seed=0, num_envs=4, progress=False)["env_steps_per_s"] for _ in range(3)]
    print(f"vectorised evaluation: {np.median(rates):.0f} env steps/s (runs: {', '.join(f'{r:.0f}' for r in rates)})")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "dump":
        dump(Path(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "overhead":
        overhead()
    elif len(sys.argv) == 2 and sys.argv[1] == "speed":
        speed()
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
