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

    python tools/bench_speed.py [--reps 15] [--nets quick 4.7M dp64M] [--train-steps 6] [--train-rounds 3] [--bf16] [--skip-train]
        [--skip-latency] [--out bench_out/speed.json]
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
from robopolicy.defaults import group_node
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


class IdentityNet(torch.nn.Module):
    """A denoiser that returns its input: a policy with it costs only the work outside the network."""

    def forward(self, x: torch.Tensor, t, cond: torch.Tensor) -> torch.Tensor:
        return x


class NetTimer:
    """Wall time spent inside ``net``'s forward calls (forward pre-/post-hooks), summed until :meth:`take`.

    The hooks' own dispatch lands outside the timed span, so the share outside the network they give is,
    if anything, slightly too high."""

    def __init__(self, net: torch.nn.Module):
        self.total_s, self._t0 = 0.0, 0.0
        self.handles = [net.register_forward_pre_hook(self._pre), net.register_forward_hook(self._post)]

    def _pre(self, module, args):
        self._t0 = time.perf_counter()

    def _post(self, module, args, out):
        self.total_s += time.perf_counter() - self._t0

    def take(self) -> float:
        t, self.total_s = self.total_s, 0.0
        return t

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def interleaved(fns: dict, reps: int, paired: dict | None = None, hooked: dict | None = None,
                warmup: int = 2) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Median ms of each fn, one call of every fn per round. Two shares outside the network per round:

    * ``paired[k] = (net_fn, n)``: right after fn k, n bare network calls are timed, share = 1 − net / chunk.
      The bare calls run with the weights just loaded into the caches by the chunk, while the chunk's own
      network call follows other cases' (up to 64 M-parameter) networks, so this share also counts the
      chunk's cold-cache network time as "outside".
    * ``hooked[k] = net``: the time inside ``net``'s forward during the chunk itself (:class:`NetTimer`),
      share = 1 − in-net / chunk: the same calls, the same cache state.

    -> (median ms, median paired share, median hooked share)."""
    paired, hooked = paired or {}, hooked or {}
    timers = {k: NetTimer(net) for k, net in hooked.items()}
    times, shares, hshares = {k: [] for k in fns}, {k: [] for k in paired}, {k: [] for k in hooked}
    try:
        for i in range(reps + warmup):
            for k, f in fns.items():
                if k in timers:
                    timers[k].take()
                t0 = time.perf_counter()
                f()
                t1 = time.perf_counter()
                in_net = timers[k].take() if k in timers else None
                if k in paired:
                    net_fn, n = paired[k]
                    for _ in range(n):
                        net_fn()
                    if i >= warmup:
                        shares[k].append(1.0 - (time.perf_counter() - t1) / (t1 - t0))
                if i >= warmup:
                    times[k].append((t1 - t0) * 1e3)
                    if in_net is not None:
                        hshares[k].append(1.0 - in_net / (t1 - t0))
    finally:
        for t in timers.values():
            t.remove()
    med = lambda d: {k: statistics.median(v) for k, v in d.items()}  # noqa: E731
    return med(times), med(shares), med(hshares)


def latency(reps: int, net_labels: list[str]) -> dict:
    rng = np.random.default_rng(1)
    hist = {"state": rng.normal(size=(TO, OBS)).astype(np.float32)}
    cases, evals, nets = {}, {}, {}
    for label, dims in NETS.items():
        if label not in net_labels:
            continue
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
                                   "critic": group_node("critic", "iql")})
    critic = build_critic(critic_cfg, SPEC, Normalizer.empty_for_spec(SPEC, ["state"])).eval()
    student = cases["CD student 1-step [quick]"]
    vgps = ValueGuidedPolicy(student, critic, k=10)
    batched = {k: v[None] for k, v in hist.items()}
    # The work outside the network alone: the same policies with the network replaced by an identity (µs).
    bare = {}
    for k in ("CD student 1-step [quick]", "BESO DDIM-1 [quick]"):
        steps = evals[k][1]
        p = build("consistency" if k.startswith("CD") else "beso", NETS["quick"], {"steps": steps})
        p.net = IdentityNet()
        bare[f"outside work alone: {k}"] = p
    qnet = student.net
    x1, x10, c1 = torch.randn(1, TP, ACT), torch.randn(10, TP, ACT), torch.randn(1, TO * OBS)
    c10 = c1.expand(10, -1)
    chunks10 = torch.randn(1, 10, TP - TO + 1, ACT)
    fns = {"LeRobot DDIM-10 [dp64M]": lambda: lerobot.predict_chunk(hist), "V-GPS K=10 over CD 1-step [quick]": lambda: vgps.predict_chunk(hist),
           "CD 1-step, 10 samples, no critic [quick]": lambda: student.sample(batched, n=10),
           "quick U-Net forward, batch 1": lambda: qnet(x1, torch.ones(1), c1),
           "quick U-Net forward, batch 10": lambda: qnet(x10, torch.ones(10), c10),
           "critic score, K=10": lambda: critic.score(batched, chunks10)}
    fns.update({k: (lambda p=p: p.predict_chunk(hist)) for k, p in cases.items()})
    fns.update({k: (lambda p=p: p.predict_chunk(hist)) for k, p in bare.items()})
    # Outside-network shares are measured for the cases where they matter and cost little: 1 and 3 network
    # evaluations on the small nets, 1 on the 64 M one.
    shared = [k for k, (label, n) in evals.items() if n == 1 or (n == 3 and label != "dp64M")]
    paired = {k: (nets[evals[k][0]], evals[k][1]) for k in shared}
    hooked = {k: cases[k].net for k in shared}
    with torch.inference_mode():
        med, shares, hshares = interleaved(fns, reps, paired, hooked)
    ref = med["LeRobot DDIM-10 [dp64M]"]
    rows = []
    for k, ms in med.items():
        row = {"case": k, "median_ms": ms, "speedup_vs_lerobot": ref / ms}
        if k in shares:
            row["outside_net_share_paired"] = shares[k]
            row["outside_net_share"] = hshares[k]
        rows.append(row)
    base = med["CD student 1-step [quick]"]
    return {"rows": rows, "vgps_over_base": med["V-GPS K=10 over CD 1-step [quick]"] / base,
            "samples10_over_base": med["CD 1-step, 10 samples, no critic [quick]"] / base,
            "net_batch10_over_batch1": med["quick U-Net forward, batch 10"] / med["quick U-Net forward, batch 1"],
            "critic_ms": med["critic score, K=10"]}


class SyntheticWindows(torch.utils.data.Dataset):
    def __init__(self, n: int = 2048):
        g = torch.Generator().manual_seed(0)
        self.state, self.action = torch.randn(n, TO, OBS, generator=g), torch.rand(n, TP, ACT, generator=g) * 2 - 1

    def __len__(self):
        return len(self.state)

    def __getitem__(self, i):
        return {"obs": {"state": self.state[i]}, "action": self.action[i]}


def train_ours(steps: int, batch: int, precision: str = "fp32") -> list[float]:
    """ms of each step after the first two of a Trainer.fit run (log_every=1: the trainer's own per-step rate)."""
    from robopolicy.training import Trainer
    from robopolicy.training.config import trainer_config

    model = build("beso", NETS["dp64M"]).train()
    cfg = {"steps": steps, "batch_size": batch, "device": "cpu", "log_every": 1, "val_every": 0, "ckpt_every": 0,
           "progress": False, "wandb": {"mode": "disabled"}, "ema": {"enabled": True}, "precision": precision}
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
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS), help="U-Nets of the latency table (quick is needed)")
    ap.add_argument("--bf16", action="store_true", help="also time our trainer with precision=bf16 (CPU autocast)")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, median of {args.reps} interleaved rounds")
    res = {} if args.skip_latency else latency(args.reps, args.nets)
    if res:
        print(f"{'case':<40} {'ms/chunk':>9} {'× LeRobot':>9} {'outside net (in-chunk)':>22} {'(paired)':>9}")
        for r in res["rows"]:
            share = f"{r['outside_net_share']:.1%}" if "outside_net_share" in r else "-"
            pshare = f"{r['outside_net_share_paired']:.1%}" if "outside_net_share_paired" in r else "-"
            print(f"{r['case']:<40} {r['median_ms']:>9.2f} {r['speedup_vs_lerobot']:>9.1f} {share:>22} {pshare:>9}")
        print(f"V-GPS K=10 over the 1-step student / the student alone: {res['vgps_over_base']:.2f}×; 10 samples without the critic "
              f"{res['samples10_over_base']:.2f}×; the bare quick U-Net at batch 10 / batch 1: {res['net_batch10_over_batch1']:.2f}×; "
              f"critic score at K=10 {res['critic_ms']:.2f} ms")
    if not args.skip_train:
        precisions = ["fp32", "bf16"] if args.bf16 else ["fp32"]
        ours: dict[str, list[float]] = {p: [] for p in precisions}
        plain: list[float] = []
        for _ in range(args.train_rounds):  # alternated runs; the median over all their per-step times
            for p in precisions:
                ours[p] += train_ours(args.train_steps, args.batch, p)
            plain += train_plain(args.train_steps, args.batch)
        res["train"] = {"plain_ms": statistics.median(plain), "plain_all": plain}
        for p in precisions:
            ms = statistics.median(ours[p])
            res["train"].update({f"ours_{p}_ms": ms, f"ours_{p}_all": ours[p], f"speedup_{p}": res["train"]["plain_ms"] / ms})
            print(f"training step, batch {args.batch}, 64 M U-Net: ours (precision={p}) {ms:.0f} ms, plain loop "
                  f"{res['train']['plain_ms']:.0f} ms -> {res['train']['plain_ms'] / ms:.2f}× (median of {len(ours[p])} / {len(plain)} steps)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
