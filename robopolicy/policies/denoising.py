"""Shared machinery of the denoising policies (Diffusion Policy, BESO): net, sampler, guidance.

``sample(obs, n, goal)`` encodes the observations once, repeats the conditioning n times and runs
the sampler; every denoising step is ONE network call on all B·n chunks — or on 2·B·n when a goal
is given with guidance w ∉ {0, 1}, the conditioned and null-goal halves stacked in one batch and
combined with :func:`robopolicy.policies.edm.cfg_combine` on the subclass's *prediction* (the
denoised chunk D for BESO, the training target — epsilon by default — for Diffusion Policy).
w = 0 runs the null-goal half only (exactly the goal-free policy), w = 1 the goal half only.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Mapping

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from robopolicy.errors import ConfigError
from robopolicy.nets.common import has_batchnorm
from robopolicy.policies.base import ObsDict
from robopolicy.policies.common import ChunkPolicy
from robopolicy.policies.edm import cfg_combine


def _plain(cfg: Mapping | DictConfig | None) -> dict:
    if cfg is None:
        return {}
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


class DenoisingPolicy(ChunkPolicy, abc.ABC):
    """Base of the diffusion policies. ``net_cfg`` has a ``_target_`` denoiser class taking
    ``action_dim, horizon, cond_dim, t_scale``; ``sampler`` is ``{name, steps, ...}``; ``guidance`` is w.
    """

    #: factor applied to the noise-level input before the sinusoidal embedding (see NoiseLevelEmbedding)
    t_scale: float = 1.0

    def __init__(self, spec, normalizer, net_cfg: Mapping | DictConfig, *, sampler: Mapping,
                 guidance: float, inference: Mapping, **kwargs: Any):
        super().__init__(spec, normalizer, **kwargs)
        inf = _plain(inference)
        # torch.compile mode for the denoiser at inference (None = eager; "reduce-overhead" = CUDA graphs on CUDA).
        self.compile_mode = inf.get("compile") or None
        if self.compile_mode not in (None, "default", "reduce-overhead", "max-autotune"):
            raise ConfigError(f"Unknown policy.inference.compile {self.compile_mode!r}; use null, default, reduce-overhead or max-autotune.")
        self.warmup_calls = int(inf["warmup_calls"])
        self.__dict__["_compiled_net"] = None  # not a submodule: never saved, never deep-copied into the EMA model
        net_cfg = _plain(net_cfg)
        if "_target_" not in net_cfg:
            raise ConfigError("The net config has no _target_; use net=unet, net=transformer or net=mlp.")
        self.net = instantiate(net_cfg, action_dim=self.action_dim, horizon=self.action_horizon,
                               cond_dim=self.cond_dim, t_scale=self.t_scale)
        if has_batchnorm(self.net):
            raise ConfigError("The denoiser contains BatchNorm, which breaks the EMA of weights; use GroupNorm or LayerNorm.")
        self.guidance = float(guidance)
        self.sampler_cfg: dict = {}
        self.sampler = None
        self.set_sampler(sampler or {})

    # -- sampler --------------------------------------------------------------------------------
    def set_sampler(self, sampler_cfg: Mapping | DictConfig) -> None:
        """Switch sampler or step count without retraining, e.g. ``{"name": "ddim", "steps": 3}``.

        Keys left out keep their current value. Unknown names raise ConfigError listing the valid ones.
        """
        cfg = {**self.sampler_cfg, **_plain(sampler_cfg)}
        self.sampler = self._make_sampler(cfg)
        self.sampler_cfg = cfg

    @abc.abstractmethod
    def _make_sampler(self, cfg: dict):
        """{name, steps, ...} -> a sampler object with ``n_evals``."""

    @abc.abstractmethod
    def _sample_normalized(self, guided: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Run the sampler from standard normal x (N, Tp, A); ``guided(x, t)`` -> guided prediction."""

    @abc.abstractmethod
    def _predict(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """One network evaluation -> the quantity guidance combines (N, Tp, A)."""

    # -- inference ------------------------------------------------------------------------------
    @property
    def denoiser(self) -> torch.nn.Module:
        """The network to call: compiled (``inference.compile``) when sampling without autograd, else ``net``."""
        if self.compile_mode is None or self.training or torch.is_grad_enabled():
            return self.net
        if self._compiled_net is None:
            self.__dict__["_compiled_net"] = torch.compile(self.net, mode=self.compile_mode, dynamic=False)
        return self._compiled_net

    def warmup(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Sample ``warmup_calls`` times per batch size on zero observations, so one-off work (allocator
        growth, kernel selection, compilation) happens at load instead of in the first chunk."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the caller's random streams stay untouched
            self._warmup(batch_sizes)

    def _warmup(self, batch_sizes: tuple[int, ...]) -> None:
        for b in batch_sizes:
            obs = {k: torch.zeros((b, self.obs_horizon, *self.spec.obs[k].shape),
                                  dtype=torch.uint8 if self.spec.obs[k].kind == "rgb" else torch.float32) for k in self.obs_keys}
            for _ in range(self.warmup_calls):
                self.sample(obs, n=1)

    def _guided(self, cond: torch.Tensor, cond_uncond: torch.Tensor | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """A function (x (N, Tp, A), t (N,) or scalar) -> guided prediction, one network call each."""
        w = self.guidance
        if cond_uncond is None or w == 1.0:
            return lambda x, t: self._predict(x, t, cond)
        if w == 0.0:
            return lambda x, t: self._predict(x, t, cond_uncond)
        both = torch.cat([cond, cond_uncond], dim=0)

        def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t2 = torch.cat([t, t]) if isinstance(t, torch.Tensor) and t.dim() > 0 else t
            pc, pu = self._predict(torch.cat([x, x]), t2, both).chunk(2)
            return cfg_combine(pc, pu, w)

        return fn

    @torch.inference_mode()
    def sample(self, obs: ObsDict, n: int = 1, goal: ObsDict | None = None) -> torch.Tensor:
        """obs {key: (B, To, ...)}, goal {key: (B, ...)} -> (B, n, Tp-To+1, A) in env units."""
        cond = self.encode(obs, goal)
        b = cond.shape[0]
        if n > 1:
            cond = cond.repeat_interleave(n, dim=0)
        cond_u = self.unconditioned(cond) if (goal is not None and self.goal_encoder is not None) else None
        x = torch.randn(b * n, self.action_horizon, self.action_dim, device=cond.device)
        x = self._sample_normalized(self._guided(cond, cond_u), x)
        return self.chunk_to_env(x, b, n)
