"""EDM (Karras et al. 2022) math used by BESO, as short pure functions.

Noise model (variance exploding): x_σ = a + σ·ε with ε ~ N(0, I). The network F is wrapped by the
preconditioning ``D(x, σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ))`` so that D predicts
the clean (normalised) action chunk a.

Why by hand: diffusers' EDM schedulers carry the same formulas as *methods of a sampler object*
(``precondition_inputs/outputs``), but training needs them without a sampler, per-sample σ, and
the noise-level densities (log-logistic, truncated log-normal) that diffusers does not provide.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class EDMCoefficients(NamedTuple):
    """Each field has the shape of ``sigma`` (e.g. (B, 1, 1) to broadcast over (B, T, A))."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = 0.5) -> EDMCoefficients:
    """EDM preconditioning (Karras et al. 2022, Table 1).

    c_skip = σd²/(σ²+σd²), c_out = σ·σd/√(σ²+σd²), c_in = 1/√(σ²+σd²), c_noise = ln(σ)/4.
    sigma: any shape, > 0 -> four tensors of that shape.
    """
    s2 = sigma**2 + sigma_data**2
    return EDMCoefficients(
        c_skip=sigma_data**2 / s2,
        c_out=sigma * sigma_data / s2.sqrt(),
        c_in=1.0 / s2.sqrt(),
        c_noise=sigma.log() / 4.0,
    )


def edm_training_target(x0: torch.Tensor, x_noisy: torch.Tensor, sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """The raw-network target (x0 − c_skip·x_σ)/c_out.

    MSE between F and this target equals EDM's loss λ(σ)·‖D − x0‖² with λ(σ) = 1/c_out².
    x0, x_noisy: (B, T, A); sigma: (B, 1, 1) -> (B, T, A).
    """
    c = edm_coefficients(sigma, sigma_data)
    return (x0 - c.c_skip * x_noisy) / c.c_out


def edm_raw_output_from_denoised(x_noisy: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor | float,
                                 sigma_data: float = 0.5) -> torch.Tensor:
    """Invert the output preconditioning: F = (D − c_skip·x)/c_out (what diffusers' EDM schedulers take).

    x_noisy, denoised: (B, T, A); sigma: scalar or broadcastable -> (B, T, A).
    """
    c = edm_coefficients(torch.as_tensor(sigma, dtype=x_noisy.dtype, device=x_noisy.device), sigma_data)
    return (denoised - c.c_skip * x_noisy) / c.c_out


def sample_sigma_loglogistic(n: int, loc: float, scale: float, sigma_min: float, sigma_max: float,
                             generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """σ with ln σ ~ Logistic(loc, scale) truncated to [σ_min, σ_max] (BESO; k-diffusion's rand_log_logistic).

    Inverse-CDF sampling between the CDF values of the bounds. -> (n,).
    """
    lo = torch.sigmoid(torch.tensor((math.log(sigma_min) - loc) / scale))
    hi = torch.sigmoid(torch.tensor((math.log(sigma_max) - loc) / scale))
    u = torch.rand(n, generator=generator, device=device) * (hi - lo) + lo
    return (torch.logit(u) * scale + loc).exp()


def sample_sigma_lognormal(n: int, loc: float, scale: float, sigma_min: float, sigma_max: float,
                           generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """σ with ln σ ~ Normal(loc, scale) truncated to [σ_min, σ_max] (EDM's P_mean/P_std). -> (n,)."""
    normal = torch.distributions.Normal(0.0, 1.0)
    lo = normal.cdf(torch.tensor((math.log(sigma_min) - loc) / scale))
    hi = normal.cdf(torch.tensor((math.log(sigma_max) - loc) / scale))
    u = torch.rand(n, generator=generator, device=device) * (hi - lo) + lo
    return (torch.special.ndtri(u) * scale + loc).exp()


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + w·(cond − uncond). Any equal shapes -> that shape.

    w = 0 gives the unconditioned prediction, w = 1 the conditioned one, w > 1 extrapolates.
    """
    return uncond + guidance * (cond - uncond)
