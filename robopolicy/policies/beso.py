"""BESO (Reuss et al. 2023): score-based diffusion policy with EDM preconditioning and few-step samplers.

Training: σ from a log-logistic (BESO) or truncated log-normal (EDM) density on [σ_min, σ_max],
x_σ = a + σ·ε, loss = MSE between the raw net output and the preconditioned target, i.e. EDM's
λ(σ)·‖D(x_σ, σ) − a‖² with λ = 1/c_out². Goal conditioning by a future observation, with the goal
replaced by a learned null token with probability ``cond_drop_prob`` (classifier-free guidance).
Inference: ``sampler.name`` ∈ {ddim, euler, dpmsolver++} with 1–10 steps; guidance combines the
denoised chunks D (see DenoisingPolicy).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from robopolicy.errors import ConfigError
from robopolicy.policies.denoising import DenoisingPolicy
from robopolicy.policies.edm import EDMCoefficients, edm_coefficients, edm_training_target, sample_sigma_loglogistic, sample_sigma_lognormal
from robopolicy.policies.samplers import EDMSampler, make_edm_sampler

SIGMA_DENSITIES = {"loglogistic": sample_sigma_loglogistic, "lognormal": sample_sigma_lognormal}


class BESOPolicy(DenoisingPolicy):
    """Args (beyond ChunkPolicy/DenoisingPolicy): sigma_data, sigma_min, sigma_max, and
    noise_density ``{name: loglogistic|lognormal, loc, scale}`` (loc None = ln σ_data).
    """

    # c_noise = ln(σ)/4 spans about [-1.3, 0] for σ ∈ [0.005, 1]; ×100 spreads it over a range the
    # sinusoidal embedding resolves (comparable to DDPM step indices).
    t_scale = 100.0

    def __init__(self, spec, normalizer, net_cfg, *, sigma_data: float, sigma_min: float, sigma_max: float,
                 noise_density: Mapping[str, Any], **kwargs: Any):
        # Every value (σ range, density, guidance 1.5, sampler) comes from conf/policy/beso.yaml, the one place.
        self.sigma_data, self.sigma_min, self.sigma_max = float(sigma_data), float(sigma_min), float(sigma_max)
        if not 0 < self.sigma_min < self.sigma_max:
            raise ConfigError(f"Need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}.")
        density = dict(noise_density)
        name = density.get("name")
        if name not in SIGMA_DENSITIES:
            raise ConfigError(f"Unknown noise_density {name!r}; use one of {sorted(SIGMA_DENSITIES)}.")
        self._density = SIGMA_DENSITIES[name]
        loc = density.get("loc")
        self._density_args = dict(loc=math.log(self.sigma_data) if loc is None else float(loc), scale=float(density["scale"]))
        super().__init__(spec, normalizer, net_cfg, **kwargs)

    def _make_sampler(self, cfg: dict) -> EDMSampler:
        return make_edm_sampler(cfg, self.sigma_min, self.sigma_max, self.sigma_data)

    def _coefficients(self, sigma: torch.Tensor) -> EDMCoefficients:
        """The preconditioning of this policy's D (EDM's); subclasses with another parameterisation override it."""
        return edm_coefficients(sigma, self.sigma_data)

    def _scalar_coefficients(self, sigma: float) -> tuple[float, float, float, float]:
        """(c_skip, c_out, c_in, c_noise) as floats for one σ, computed once per σ (samplers reuse a few levels)."""
        cache = self.__dict__.setdefault("_coef_cache", {})
        if sigma not in cache:
            cache[sigma] = tuple(float(v) for v in self._coefficients(torch.tensor(sigma, dtype=torch.float64)))
        return cache[sigma]

    def _predict(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: torch.Tensor) -> torch.Tensor:
        """Denoised chunk D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise, cond). x: (N, Tp, A); σ: (N,) or a float
        (the samplers' case: one level for the whole batch, so the coefficients are cached scalars)."""
        if isinstance(sigma, float):
            c_skip, c_out, c_in, c_noise = self._scalar_coefficients(sigma)
            raw = self.denoiser(x * c_in, c_noise, cond)
            return torch.add(x * c_skip, raw, alpha=c_out)
        c = self._coefficients(sigma.view(-1, 1, 1))
        raw = self.denoiser(c.c_in * x, c.c_noise.view(-1), cond)
        return c.c_skip * x + c.c_out * raw

    def _sample_normalized(self, guided: Callable, x: torch.Tensor) -> torch.Tensor:
        return self.sampler.sample(guided, x)

    def sample_sigmas(self, n: int, device=None) -> torch.Tensor:
        """(n,) training noise levels from the configured density on [σ_min, σ_max]."""
        return self._density(n, sigma_min=self.sigma_min, sigma_max=self.sigma_max, device=device, **self._density_args)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        cond, a = self.encode_batch(batch)
        sigma = self.sample_sigmas(a.shape[0], device=a.device).view(-1, 1, 1)
        x = a + sigma * torch.randn_like(a)
        c = edm_coefficients(sigma, self.sigma_data)
        raw = self.net(c.c_in * x, c.c_noise.view(-1), cond)
        loss = F.mse_loss(raw, edm_training_target(a, x, sigma, self.sigma_data))
        return loss, {}  # the trainer logs the loss itself (summed on device: no host sync per step)
