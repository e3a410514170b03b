"""Samplers: the loops that turn noise into an action chunk, one network call per step.

Two families, each a small class whose constructor arguments are its config (``sampler.*``):

* Discrete-time (Diffusion Policy): diffusers' DDPMScheduler / DDIMScheduler /
  DPMSolverMultistepScheduler, built from the training scheduler's config. ``model_fn(x, t)``
  returns the training prediction (epsilon by default).
* Continuous σ (BESO / EDM): ``denoise_fn(x, σ)`` returns the *denoised* chunk D(x, σ) (with any
  classifier-free guidance already applied). ``euler`` and ``dpmsolver++`` wrap diffusers'
  EDMEulerScheduler / EDMDPMSolverMultistepScheduler; ``ddim`` is BESO's DDIM in σ-space, written
  here because diffusers has no σ-space DDIM for EDM models.

σ schedules come from diffusers (karras with σ_min/σ_max/ρ, or exponential) and end at σ = 0.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EDMDPMSolverMultistepScheduler,
    EDMEulerScheduler,
)

from robopolicy.errors import ConfigError
from robopolicy.policies.edm import edm_raw_output_from_denoised

# denoise_fn(x (N, T, A), σ) -> D (N, T, A); σ is a float (one level for the whole batch: the policy
# caches its coefficients per level, so a step costs the network and a few tensor ops) or an (N,) tensor.
DenoiseFn = Callable[[torch.Tensor, "torch.Tensor | float"], torch.Tensor]

# --------------------------------------------------------------------------------------------
# Discrete-time samplers (Diffusion Policy)
# --------------------------------------------------------------------------------------------

DISCRETE_SCHEDULERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmsolver++": DPMSolverMultistepScheduler}
DISCRETE_EXTRA = {"dpmsolver++": {"algorithm_type": "dpmsolver++", "solver_order": 2}}


class DiscreteSampler:
    """A diffusers discrete-time scheduler run for ``steps`` steps.

    ``sample(model_fn, x_T, generator)``: x_T (N, T, A) standard normal -> x_0 (N, T, A).
    """

    def __init__(self, train_scheduler: DDPMScheduler, name: str, steps: int, **kwargs):  # values: policy.sampler
        if name not in DISCRETE_SCHEDULERS:
            raise ConfigError(f"Unknown sampler {name!r} for this policy; use one of {sorted(DISCRETE_SCHEDULERS)}.")
        steps = int(steps)
        n_train = train_scheduler.config.num_train_timesteps
        if not 1 <= steps <= n_train:
            raise ConfigError(f"sampler.steps={steps} must be between 1 and the {n_train} training steps.")
        self.name, self.steps = name, steps
        extra = {**DISCRETE_EXTRA.get(name, {}), **kwargs}
        self.scheduler = DISCRETE_SCHEDULERS[name].from_config(train_scheduler.config, **extra)

    @property
    def n_evals(self) -> int:
        return self.steps

    def sample(self, model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
        sched = self.scheduler
        sched.set_timesteps(self.steps, device=x.device)
        x = x * sched.init_noise_sigma
        for t in sched.timesteps:
            pred = model_fn(sched.scale_model_input(x, t), t)
            x = sched.step(pred, t, x, generator=generator).prev_sample
        return x


# --------------------------------------------------------------------------------------------
# Continuous-σ samplers (BESO / EDM)
# --------------------------------------------------------------------------------------------


class EDMSampler:
    """Base for σ-space samplers. ``sample(denoise_fn, x_T, generator)`` with x_T = σ_max·ε.

    Args: steps (network evaluations), sigma_min, sigma_max, sigma_data, schedule
    (``karras`` | ``exponential``), rho (Karras schedule curvature).
    """

    def __init__(self, steps: int, sigma_min: float, sigma_max: float, sigma_data: float, schedule: str, rho: float):
        # No defaults: steps/schedule/rho come from policy.sampler, the σ range from the policy (its YAML).
        if int(steps) < 1:
            raise ConfigError(f"sampler.steps={steps} must be at least 1.")
        if schedule not in ("karras", "exponential"):
            raise ConfigError(f"Unknown sampler.schedule {schedule!r}; use karras or exponential.")
        self.steps, self.sigma_min, self.sigma_max = int(steps), float(sigma_min), float(sigma_max)
        self.sigma_data, self.schedule, self.rho = float(sigma_data), schedule, float(rho)
        self._sigmas: torch.Tensor | None = None

    @property
    def n_evals(self) -> int:
        return self.steps

    def _diffusers_kwargs(self) -> dict:
        return dict(sigma_min=self.sigma_min, sigma_max=self.sigma_max, sigma_data=self.sigma_data,
                    sigma_schedule=self.schedule, rho=self.rho, prediction_type="epsilon", final_sigmas_type="zero")

    def sigmas(self) -> torch.Tensor:
        """(steps + 1,) decreasing noise levels from σ_max to σ_min, then 0 (diffusers' schedule).

        One step is [σ_max, 0] for every schedule (diffusers' exponential schedule would give [σ_min]).
        """
        if self.steps == 1:
            return torch.tensor([self.sigma_max, 0.0])
        if self._sigmas is None:
            sched = EDMEulerScheduler(**self._diffusers_kwargs())
            sched.set_timesteps(self.steps)
            self._sigmas = sched.sigmas.clone()
        return self._sigmas

    def sample(self, denoise_fn: DenoiseFn, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (N, T, A) standard normal -> (N, T, A) samples. One ``denoise_fn`` call per step."""
        x = x * self.sigma_max  # VE noise at σ_max (diffusers' init_noise_sigma assumes another input scaling)
        if self.steps == 1:
            # Euler, DDIM and DPM-Solver++ all reduce to x_0 = D(x_T, σ_max) for one step to σ = 0.
            return denoise_fn(x, self.sigma_max)
        return self._sample_steps(denoise_fn, x, generator)

    def _sample_steps(self, denoise_fn: DenoiseFn, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError


def ddim_sigma_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """BESO's deterministic DDIM step in σ-space (k-diffusion ``sample_ddim`` with t = −ln σ).

    x_next = (σ_next/σ)·x + (1 − σ_next/σ)·D. For the VE probability-flow ODE this exponential
    integrator coincides with an Euler step in σ; with σ_next = 0 it returns D.
    x, denoised: (N, T, A) -> (N, T, A).
    """
    ratio = sigma_next / sigma
    return ratio * x + (1.0 - ratio) * denoised


class DDIMSigmaSampler(EDMSampler):
    """BESO's DDIM in σ-space (by hand: diffusers' DDIMScheduler works on discrete α-bar timesteps only)."""

    def _sample_steps(self, denoise_fn: DenoiseFn, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        sigmas = self._sigma_list = getattr(self, "_sigma_list", None) or self.sigmas().tolist()
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            d = denoise_fn(x, s)
            x = ddim_sigma_step(x, d, s, s_next)
        return x


class EDMEulerSampler(EDMSampler):
    """diffusers' EDMEulerScheduler (deterministic, s_churn = 0); fed the denoised chunk directly."""

    def _sample_steps(self, denoise_fn: DenoiseFn, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        sched = self._scheduler = getattr(self, "_scheduler", None) or EDMEulerScheduler(**self._diffusers_kwargs())
        sched.set_timesteps(self.steps, device=x.device)
        sched.set_begin_index(0)
        for i, t in enumerate(sched.timesteps):
            sigma = float(sched.sigmas[i])
            d = denoise_fn(x, sigma)
            # Our denoise_fn applies c_in itself; mark the input as scaled so diffusers does not warn.
            sched.is_scale_input_called = True
            x = sched.step(d, t, x, pred_original_sample=d, generator=generator).prev_sample
        return x


class EDMDPMSolverSampler(EDMSampler):
    """diffusers' EDMDPMSolverMultistepScheduler (DPM-Solver++ 2M, first order at the last step).

    It takes the raw network output F and applies EDM's output preconditioning itself, so the
    (guided) denoised chunk is mapped back with :func:`edm_raw_output_from_denoised`.
    """

    def __init__(self, solver_order: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.solver_order = int(solver_order)

    def _sample_steps(self, denoise_fn: DenoiseFn, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        sched = self._scheduler = getattr(self, "_scheduler", None) or EDMDPMSolverMultistepScheduler(
            **self._diffusers_kwargs(), solver_order=self.solver_order, algorithm_type="dpmsolver++")
        sched.set_timesteps(self.steps, device=x.device)
        sched.set_begin_index(0)
        for i, t in enumerate(sched.timesteps):
            sigma = float(sched.sigmas[i])
            d = denoise_fn(x, sigma)
            raw = edm_raw_output_from_denoised(x, d, sigma, self.sigma_data)
            x = sched.step(raw, t, x, generator=generator).prev_sample
        return x


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """(n,) Karras et al. (2022) noise levels, decreasing from exactly σ_max to exactly σ_min (n ≥ 2).

    diffusers' EDM scheduler computes the ramp; its trailing σ = 0 is dropped and the two ends are
    pinned to the exact bounds (float rounding of the ρ-th powers would otherwise move σ_min).
    """
    sched = EDMEulerScheduler(sigma_min=sigma_min, sigma_max=sigma_max, sigma_schedule="karras", rho=rho,
                              final_sigmas_type="zero")
    sched.set_timesteps(int(n))
    s = sched.sigmas[:-1].to(torch.float64).clone()
    s[0], s[-1] = sigma_max, sigma_min
    return s


class ConsistencySampler(EDMSampler):
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) for a consistency model f(x, σ).

    Step 1: x_0 = f(σ_max·ε, σ_max). Each further step re-noises the estimate to the next level τ of
    a Karras schedule (``steps + 1`` levels from σ_max to σ_min, the last dropped) as
    x = x_0 + √(τ² − σ_min²)·ε and evaluates f once more. ``steps`` network calls in all; the noise
    levels are plain floats computed once here, so a step costs only the network and two tensor ops.
    By hand: diffusers has a CMStochasticIterativeScheduler, but it hard-codes its own
    preconditioning and σ-to-timestep map, while ``denoise_fn`` here already returns f.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        levels = karras_sigmas(self.steps + 1, self.sigma_min, self.sigma_max, self.rho) if self.steps > 1 else torch.tensor([self.sigma_max])
        self.levels = [float(v) for v in levels[: self.steps]]
        self.renoise = [max(t * t - self.sigma_min**2, 0.0) ** 0.5 for t in self.levels]

    def sample(self, denoise_fn: DenoiseFn, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (N, T, A) standard normal -> (N, T, A). One ``denoise_fn`` call per step."""
        x0 = denoise_fn(x * self.sigma_max, self.sigma_max)
        for tau, scale in zip(self.levels[1:], self.renoise[1:]):
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
            x0 = denoise_fn(x0 + scale * noise, tau)
        return x0


EDM_SAMPLERS = {"ddim": DDIMSigmaSampler, "euler": EDMEulerSampler, "dpmsolver++": EDMDPMSolverSampler}


def make_edm_sampler(cfg: Mapping, sigma_min: float, sigma_max: float, sigma_data: float) -> EDMSampler:
    """Build a σ-space sampler from ``{name, steps, ...}``; the policy's σ range is passed in."""
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if name not in EDM_SAMPLERS:
        raise ConfigError(f"Unknown sampler {name!r} for this policy; use one of {sorted(EDM_SAMPLERS)}.")
    try:
        return EDM_SAMPLERS[name](sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data, **cfg)
    except TypeError as e:
        raise ConfigError(f"Bad option for sampler {name!r} ({e}); remove it from policy.sampler.") from None
