"""Diffusion Policy (Chi et al. 2023): discrete-time DDPM training, DDPM/DDIM/DPM-Solver++ inference.

Training uses diffusers' DDPMScheduler (``num_train_timesteps`` steps, ``beta_schedule``,
``prediction_type``); inference builds the sampler named in ``sampler.name`` from the same
scheduler config, so any of them can be chosen at evaluation time without retraining.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from robopolicy.policies.denoising import DenoisingPolicy
from robopolicy.policies.samplers import DiscreteSampler


class DiffusionPolicy(DenoisingPolicy):
    """Args (beyond ChunkPolicy/DenoisingPolicy): num_train_timesteps, beta_schedule, prediction_type
    (``epsilon`` | ``sample`` | ``v_prediction``), clip_sample (clip x0 to [-1, 1] in DDPM/DDIM).
    """

    t_scale = 1.0  # the net sees the integer DDPM step index 0..num_train_timesteps-1

    def __init__(self, spec, normalizer, net_cfg, *, num_train_timesteps: int, beta_schedule: str,
                 prediction_type: str, clip_sample: bool, **kwargs: Any):  # values: conf/policy/diffusion.yaml
        self._train_scheduler_kwargs = dict(num_train_timesteps=int(num_train_timesteps), beta_schedule=beta_schedule,
                                            prediction_type=prediction_type, clip_sample=bool(clip_sample))
        self.noise_scheduler = DDPMScheduler(**self._train_scheduler_kwargs)
        super().__init__(spec, normalizer, net_cfg, **kwargs)

    def _make_sampler(self, cfg: dict) -> DiscreteSampler:
        return DiscreteSampler(self.noise_scheduler, **cfg)

    def _predict(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.denoiser(x, t, cond)

    def _sample_normalized(self, guided: Callable, x: torch.Tensor) -> torch.Tensor:
        return self.sampler.sample(guided, x)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE between the net's prediction and the DDPM target at a uniformly drawn step."""
        cond, x0 = self.encode_batch(batch)
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
        x_t = self.noise_scheduler.add_noise(x0, noise, t)
        pred = self.net(x_t, t, cond)
        kind = self.noise_scheduler.config.prediction_type
        target = {"epsilon": noise, "sample": x0}.get(kind)
        if target is None:
            target = self.noise_scheduler.get_velocity(x0, noise, t)
        loss = F.mse_loss(pred, target)
        return loss, {}  # the trainer logs the loss itself (summed on device: no host sync per step)
