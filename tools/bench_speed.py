"""Side-by-side speed record, in one process and interleaved so machine load hits every case alike.

1. Latency per action chunk at batch 1 (``predict_chunk``: observation history in, numpy actions out) for our
   policies at 1 / 3 / 10 network evaluations on three U-Nets (the default and quick-start 32/64/128, a 4.7 M 64/128/256, and
   Diffusion Policy's 64 M 256/512/1024), against a re-implementation of LeRobot's Diffusion Policy DDIM-10
   inference on the same 64 M network; median ms and the ratio to the LeRobot figure. The share of a chunk
   spent outside the network is measured paired: after each chunk, as many bare forwards as it made.
2. V-GPS at K = 10 over the 1-step consistency student (quick-start net) against the student alone.
3. Training step at batch 64 on the 64 M net: the one Trainer (AdamW, warm-up/cosine, clipping, EMA) against a
   plain PyTorch loop with the same optimizer (AdamW defaults, ``loss.item()`` per step as such loops log).

State 39 -> action 4, To = 2, horizon 16, 8 executed actions. Weights are untrained: timing does not depend on them.

    python tools/bench_speed.py [--reps 15] [--train-steps 6] [--train-rounds 3] [--skip-train] [--out bench_out/speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler
from omegaconf import OmegaConf

from robopolicy.data.normalize import Normalizer
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.policies.build import build_policy

REPO = Path(__file__).resolve().parents[1]
NETS = {"quick": [32, 64, 128], "4.7M": [64, 128, 256], "dp64M": [256, 512, 1024]}
OBS, ACT, TO, TP, TA = 39, 4, 2, 16, 8
SPEC = EnvSpec(obs={"state": ObsKeySpec((OBS,))}, action_dim=ACT, action_low=(-1.0,) * ACT, action_high=(1.0,) * ACT,
               max_episode_steps=500, name="bench")


def fit_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"state": rng.normal(size=(1000, OBS)).astype(np.float32), "action": rng.uniform(-1, 1, size=(1000, ACT)).astype(np.float32)}


def normalizer() -> Normalizer:
    return Normalizer.fit(fit_data(), {"state": "minmax", "action": "minmax"})


def policy_cfg(name: str) -> OmegaConf:
    cfg = OmegaConf.load(REPO / "conf" / "policy" / f"{name}.yaml")
    if "defaults" in cfg:  # the group's defaults list (consistency builds on beso), composed as Hydra would
        base = [d for d in cfg.pop("defaults") if d != "_self_"]
        cfg = OmegaConf.merge(*[OmegaConf.load(REPO / "conf" / "policy" / f"{b}.yaml") for b in base], cfg)
    return cfg


def build(name: str, down_dims: list[int], sampler: dict | None = None):
    cfg = OmegaConf.create({"task": {"obs_horizon": TO, "action_horizon": TP, "exec_horizon": TA},
                            "policy": policy_cfg(name), "net": OmegaConf.load(REPO / "conf" / "net" / "unet.yaml")})
    cfg.net.down_dims = list(down_dims)
    if sampler:
        cfg.policy.sampler = OmegaConf.merge(cfg.policy.sampler, sampler)
    torch.manual_seed(0)
    p = build_policy(cfg, SPEC, normalizer()).eval()
    p.warmup()  # what robopolicy.load does
    return p


class LeRobotDDIM:
    """LeRobot's Diffusion Policy inference (lerobot 0.4, ``select_action`` -> ``generate_actions``), written from
    its documented behaviour: observation queue of n_obs_steps = 2; min-max normalisation of the state and of
    actions to [-1, 1]; global conditioning = the normalised states flattened; diffusers DDIMScheduler with
    100 training steps, squaredcos_cap_v2 betas (1e-4..0.02), clip_sample to ±1, epsilon prediction,
    10 inference steps with ``set_timesteps`` on every call; x_T = randn (B, horizon, A); one U-Net call per
    step with an integer timestep tensor; un-normalise and keep actions n_obs_steps−1 .. +n_action_steps (8).
    ``net`` is the same denoiser class our Diffusion Policy uses (forward(x, t, cond)).
    """

    def __init__(self, net: torch.nn.Module, data: dict[str, np.ndarray], steps: int = 10):
        self.net, self.steps = net.eval(), steps
        self.scheduler = DDIMScheduler(num_train_timesteps=100, beta_start=1e-4, beta_end=0.02, beta_schedule="squaredcos_cap_v2",
                                       clip_sample=True, clip_sample_range=1.0, prediction_type="epsilon")
        self.s_min, self.s_max = (torch.as_tensor(f(data["state"], 0)) for f in (np.min, np.max))  # dataset stats
        self.a_min, self.a_max = (torch.as_tensor(f(data["action"], 0)) for f in (np.min, np.max))
        self.queue: deque = deque(maxlen=TO)

    @torch.no_grad()
    def predict_chunk(self, obs_history: dict) -> np.ndarray:
        """obs_history {"state": (To, D)} -> (n_action_steps, A) numpy."""
        for s in obs_history["state"]:
            self.queue.append(torch.as_tensor(s))
        state = torch.stack(list(self.queue))[None]  # (1, To, D)
        state = (state - self.s_min) / (self.s_max - self.s_min + 1e-8) * 2 - 1
        cond = state.flatten(1)
        sample = torch.randn(1, TP, ACT)
        self.scheduler.set_timesteps(self.steps)
        for t in self.scheduler.timesteps:
            eps = self.net(sample, torch.full(sample.shape[:1], int(t), dtype=torch.long), cond)
            sample = self.scheduler.step(eps, t, sample).prev_sample
        actions = (sample + 1) / 2 * (self.a_max - self.a_min) + self.a_min
        return actions[0, TO - 1: TO - 1 + TA].numpy()


def interleaved(fns: dict, reps: int, paired: dict | None = None, warmup: int = 2) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms of each fn, one call of every fn per round. ``paired[k] = (net_fn, n)``: right after fn k,
    n bare network calls are timed too, and the share outside the network is 1 − net / chunk for that
    round (a paired figure: both halves see the same load). -> (median ms, median outside-network share)."""
    paired = paired or {}
    times, shares = {k: [] for k in fns}, {k: [] for k in paired}
    for i in range(reps + warmup):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            t1 = time.perf_counter()
            if k in paired:
                net_fn, n = paired[k]
                for _ in range(n):
                    net_fn()
                if i >= warmup:
                    shares[k].append(1.0 - (time.perf_counter() - t1) / (t1 - t0))
            if i >= warmup:
                times[k].append((t1 - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}, {k: statistics.median(v) for k, v in shares.items()}


def latency(reps: int) -> dict:
    rng = np.random.default_rng(1)
    hist = {"state": rng.normal(size=(TO, OBS)).astype(np.float32)}
    cases, evals, nets = {}, {}, {}
    for label, dims in NETS.items():
        for steps in (1, 3, 10):
            cases[f"BESO DDIM-{steps} [{label}]"] = build("beso", dims, {"steps": steps})
            evals[f"BESO DDIM-{steps} [{label}]"] = (label, steps)
        cases[f"CD student 1-step [{label}]"] = build("consistency", dims, {"steps": 1})
        evals[f"CD student 1-step [{label}]"] = (label, 1)
        cases[f"DP DDIM-10 [{label}]"] = dp = build("diffusion", dims, {"name": "ddim", "steps": 10})
        evals[f"DP DDIM-10 [{label}]"] = (label, 10)
        x, c = torch.randn(1, TP, ACT), torch.randn(1, TO * OBS)
        nets[label] = (lambda net=dp.net, x=x, c=c: net(x, torch.ones(1), c))
    lerobot = LeRobotDDIM(build("diffusion", NETS["dp64M"]).net, fit_data())
    from robopolicy.value.build import build_critic
    from robopolicy.value.vgps import ValueGuidedPolicy

    critic_cfg = OmegaConf.create({"task": {"obs_horizon": TO, "action_horizon": TP, "exec_horizon": TA},
                                   "critic": OmegaConf.load(REPO / "conf" / "critic" / "iql.yaml")})
    critic = build_critic(critic_cfg, SPEC, Normalizer.empty_for_spec(SPEC, ["state"])).eval()
    student = cases["CD student 1-step [quick]"]
    vgps = ValueGuidedPolicy(student, critic, k=10)
    batched = {k: v[None] for k, v in hist.items()}
    fns = {"LeRobot DDIM-10 [dp64M]": lambda: lerobot.predict_chunk(hist), "V-GPS K=10 over CD 1-step [quick]": lambda: vgps.predict_chunk(hist),
           "CD 1-step, 10 samples, no critic [quick]": lambda: student.sample(batched, n=10)}
    fns.update({k: (lambda p=p: p.predict_chunk(hist)) for k, p in cases.items()})
    # Outside-network shares are measured paired for the cases where they matter and cost little: 1 and 3 network
    # evaluations on the small nets, 1 on the 64 M one.
    paired = {k: (nets[label], n) for k, (label, n) in evals.items() if n == 1 or (n == 3 and label != "dp64M")}
    with torch.inference_mode():
        med, shares = interleaved(fns, reps, paired)
    ref = med["LeRobot DDIM-10 [dp64M]"]
    rows = []
    for k, ms in med.items():
        row = {"case": k, "median_ms": ms, "speedup_vs_lerobot": ref / ms}
        if k in shares:
            row["outside_net_share"] = shares[k]
        rows.append(row)
    return {"rows": rows, "vgps_over_base": med["V-GPS K=10 over CD 1-step [quick]"] / med["CD student 1-step [quick]"]}


class SyntheticWindows(torch.utils.data.Dataset):
    def __init__(self, n: int = 2048):
        g = torch.Generator().manual_seed(0)
        self.state, self.action = torch.randn(n, TO, OBS, generator=g), torch.rand(n, TP, ACT, generator=g) * 2 - 1

    def __len__(self):
        return len(self.state)

    def __getitem__(self, i):
        return {"obs": {"state": self.state[i]}, "action": self.action[i]}


def train_ours(steps: int, batch: int) -> list[float]:
    """ms of each step after the first two of a Trainer.fit run (log_every=1: the trainer's own per-step rate)."""
    from robopolicy.training import Trainer
    from robopolicy.training.config import trainer_config

    model = build("beso", NETS["dp64M"]).train()
    cfg = {"steps": steps, "batch_size": batch, "device": "cpu", "log_every": 1, "val_every": 0, "ckpt_every": 0,
           "progress": False, "wandb": {"mode": "disabled"}, "ema": {"enabled": True}}
    with tempfile.TemporaryDirectory() as run_dir:
        Trainer(model, SyntheticWindows(), trainer_config(cfg), run_dir).fit()
        recs = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [1000.0 / r["train/steps_per_s"] for r in recs if "train/steps_per_s" in r][2:]


def train_plain(steps: int, batch: int) -> list[float]:
    """ms of each step after the first two of a plain loop: DataLoader, AdamW (same lr/betas/decay), backward, step."""
    model = build("beso", NETS["dp64M"]).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6)
    loader = iter(torch.utils.data.DataLoader(SyntheticWindows(), batch_size=batch, shuffle=True))
    times, losses = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss, _ = model.compute_loss(next(loader))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        times.append((time.perf_counter() - t0) * 1000.0)
    return times[2:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--train-steps", type=int, default=6, help="steps per training run; all but the first two are timed")
    ap.add_argument("--train-rounds", type=int, default=3, help="ours/plain runs alternated this many times")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, median of {args.reps} interleaved rounds")
    res = {} if args.skip_latency else latency(args.reps)
    if res:
        print(f"{'case':<36} {'ms/chunk':>9} {'× LeRobot':>9} {'outside net':>11}")
        for r in res["rows"]:
            share = f"{r['outside_net_share']:.1%}" if "outside_net_share" in r else "-"
            print(f"{r['case']:<36} {r['median_ms']:>9.2f} {r['speedup_vs_lerobot']:>9.1f} {share:>11}")
        print(f"V-GPS K=10 over the 1-step student / the student alone: {res['vgps_over_base']:.2f}×")
    if not args.skip_train:
        ours, plain = [], []
        for _ in range(args.train_rounds):  # alternated runs; the median over all their per-step times
            ours += train_ours(args.train_steps, args.batch)
            plain += train_plain(args.train_steps, args.batch)
        res["train"] = {"ours_ms": statistics.median(ours), "plain_ms": statistics.median(plain), "ours_all": ours, "plain_all": plain}
        res["train"]["speedup"] = res["train"]["plain_ms"] / res["train"]["ours_ms"]
        print(f"training step, batch {args.batch}, 64 M U-Net: ours {res['train']['ours_ms']:.0f} ms, plain loop "
              f"{res['train']['plain_ms']:.0f} ms -> {res['train']['speedup']:.2f}× (median of {len(ours)} / {len(plain)} steps)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
