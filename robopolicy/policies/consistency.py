"""Consistency distillation (Song et al. 2023; Consistency Policy, Prasad et al. 2024) of a BESO teacher.

The student f_θ(x, σ) maps any point of the teacher's probability-flow ODE trajectory to its
σ_min end, so one network evaluation turns σ_max·ε into an action chunk. Its parameterisation is
EDM's with the boundary condition built in (Song et al. 2023, Appendix C):

    c_skip(σ) = σd² / ((σ − σ_min)² + σd²),   c_out(σ) = (σ − σ_min)·σd / √(σ² + σd²)

so f(x, σ_min) = x exactly. c_in and c_noise are EDM's, so the teacher's weights are a good start.

Distillation step on a normalised chunk a (B, Tp, A), with Karras levels σ_1 < … < σ_N over the
teacher's [σ_min, σ_max] (ρ = 7): draw n, x_{n+1} = a + σ_{n+1}·z; one teacher ODE step (Euler or
Heun in σ, dx/dσ = (x − D(x, σ))/σ) gives x̂_n; loss = d(f_θ(x_{n+1}, σ_{n+1}), f_θ⁻(x̂_n, σ_n)) with
θ⁻ an EMA of θ (rate ``target_ema``, updated in :meth:`after_step` by the trainer).

The teacher and the target network live outside the module's state, so a student checkpoint is an
ordinary run: loading it needs neither the teacher's files nor any extra key. The target network is
saved with the trainer's state instead (:meth:`extra_train_state`, in ``train_state.pt``), so a resumed
distillation continues from the same θ⁻ rather than restarting it from the student.
``robopolicy-train policy=consistency policy.teacher=runs/X`` wires them in through
:func:`distillation_config` (the teacher's net and noise range become the student's) and
:func:`attach_teacher` (student and target start from the teacher's weights and normaliser).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from robopolicy.errors import ConfigError
from robopolicy.policies.beso import BESOPolicy
from robopolicy.policies.edm import EDMCoefficients
from robopolicy.policies.samplers import ConsistencySampler, karras_sigmas

# Student settings copied from the teacher's config: the net must match its weights, and the
# σ range, observation handling and horizons must match what the teacher learned.
TEACHER_POLICY_KEYS = ("sigma_data", "sigma_min", "sigma_max", "obs_keys", "goal_keys", "encoder", "obs_horizon",
                       "action_horizon", "exec_horizon", "cond_drop_prob", "guidance")


def consistency_coefficients(sigma: torch.Tensor, sigma_data: float, sigma_min: float) -> EDMCoefficients:
    """Consistency-model preconditioning; at σ = σ_min, c_skip = 1 and c_out = 0 exactly.

    sigma: any shape, ≥ σ_min -> four tensors of that shape (c_in, c_noise as in EDM).
    """
    s2 = sigma**2 + sigma_data**2
    d = sigma - sigma_min
    return EDMCoefficients(c_skip=sigma_data**2 / (d**2 + sigma_data**2), c_out=d * sigma_data / s2.sqrt(),
                           c_in=1.0 / s2.sqrt(), c_noise=sigma.log() / 4.0)


def teacher_ode_step(denoise, x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, solver: str = "heun") -> torch.Tensor:
    """One step of the probability-flow ODE dx/dσ = (x − D(x, σ))/σ from σ to σ_next (> 0).

    denoise(x, σ (N,)) -> D. x: (N, T, A); sigma, sigma_next: (N,) -> (N, T, A). Euler: 1 call; Heun: 2.
    """
    s, s_next = sigma.view(-1, 1, 1), sigma_next.view(-1, 1, 1)
    d = (x - denoise(x, sigma)) / s
    x_next = x + (s_next - s) * d
    if solver == "euler":
        return x_next
    d_next = (x_next - denoise(x_next, sigma_next)) / s_next
    return x + (s_next - s) * 0.5 * (d + d_next)


class _Unsaved:
    """Holds modules that must not become submodules (not saved, not averaged, not deep-copied)."""

    def __init__(self):
        self.teacher = None
        self.target = None

    def __deepcopy__(self, memo):  # the trainer's EMA copy of the student shares teacher and target
        return self


class ConsistencyPolicy(BESOPolicy):
    """A one-step student of a BESO teacher. Args beyond BESOPolicy:

    teacher: the teacher's run directory (recorded for provenance; used only by training).
    num_scales: N, the number of Karras levels of the distillation grid.
    target_ema: μ, the target network's EMA rate. ode_solver: ``heun`` | ``euler`` (teacher step).
    loss: ``l2`` | ``pseudo_huber`` (Song & Dhariwal 2023, c = 0.00054·√dim).
    """

    def __init__(self, spec, normalizer, net_cfg, *, teacher: str | None, num_scales: int, target_ema: float,
                 ode_solver: str, loss: str, **kwargs: Any):  # values: conf/policy/consistency.yaml
        if int(num_scales) < 2:
            raise ConfigError(f"policy.num_scales={num_scales} must be at least 2.")
        if ode_solver not in ("heun", "euler"):
            raise ConfigError(f"Unknown policy.ode_solver {ode_solver!r}; use heun or euler.")
        if loss not in ("l2", "pseudo_huber"):
            raise ConfigError(f"Unknown policy.loss {loss!r}; use l2 or pseudo_huber.")
        if not 0.0 <= float(target_ema) < 1.0:
            raise ConfigError(f"policy.target_ema={target_ema} must be in [0, 1).")
        self.teacher_dir = None if teacher in (None, "") else str(teacher)
        self.num_scales, self.target_ema, self.ode_solver, self.loss_name = int(num_scales), float(target_ema), ode_solver, loss
        super().__init__(spec, normalizer, net_cfg, **kwargs)
        self._unsaved = _Unsaved()
        self.register_buffer("distill_sigmas", karras_sigmas(self.num_scales, self.sigma_min, self.sigma_max).flip(0).float(),
                             persistent=False)  # (N,) increasing σ_1 = σ_min .. σ_N = σ_max

    # -- parameterisation and sampling ------------------------------------------------------------
    def _make_sampler(self, cfg: dict) -> ConsistencySampler:
        cfg = dict(cfg)
        name = cfg.pop("name", None)
        if name != "consistency":
            raise ConfigError(f"A consistency student samples with sampler.name=consistency, not {name!r}; set policy.sampler.steps=1..3 instead.")
        try:
            return ConsistencySampler(sigma_min=self.sigma_min, sigma_max=self.sigma_max, sigma_data=self.sigma_data, **cfg)
        except TypeError as e:
            raise ConfigError(f"Bad option for the consistency sampler ({e}); remove it from policy.sampler.") from None

    def _coefficients(self, sigma: torch.Tensor) -> EDMCoefficients:
        return consistency_coefficients(sigma, self.sigma_data, self.sigma_min)

    def _target_predict(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """f_θ⁻(x, σ) with the target network. x: (N, Tp, A), σ: (N,) -> (N, Tp, A)."""
        c = self._coefficients(sigma.view(-1, 1, 1))
        return c.c_skip * x + c.c_out * self._target_net()(c.c_in * x, c.c_noise.view(-1), cond)

    # -- distillation -----------------------------------------------------------------------------
    @property
    def teacher(self) -> BESOPolicy | None:
        return self._unsaved.teacher

    def set_teacher(self, teacher: BESOPolicy, init_from_teacher: bool = True) -> None:
        """Attach a frozen teacher; optionally copy its weights (net, encoders, normaliser) into the student."""
        if not isinstance(teacher, BESOPolicy) or isinstance(teacher, ConsistencyPolicy):
            raise ConfigError(f"The teacher must be a BESO run (policy=beso), not {type(teacher).__name__}; point policy.teacher at one.")
        if init_from_teacher:
            self.load_state_dict(teacher.state_dict())
        teacher.eval().requires_grad_(False)
        self._unsaved.teacher = teacher
        self._unsaved.target = None  # made from the current student weights at the first step

    def _target_net(self) -> torch.nn.Module:
        u = self._unsaved
        if u.target is None:
            u.target = copy.deepcopy(self.net).requires_grad_(False).eval()
        p = next(self.net.parameters())
        if next(u.target.parameters()).device != p.device:
            u.target.to(p.device)
        return u.target

    def _teacher_on_device(self) -> BESOPolicy:
        t = self._unsaved.teacher
        if t is None:
            raise ConfigError("This consistency student has no teacher to distil from; train it with policy.teacher=<BESO run_dir>.")
        if t.device != self.device:
            t.to(self.device)
        return t

    def _teacher_cond(self, teacher: BESOPolicy, batch: Mapping[str, Any], cond: torch.Tensor) -> torch.Tensor:
        """The teacher's conditioning for the batch, with the goal dropped in the rows where the student's was."""
        if self.goal_encoder is None:
            return teacher.encode(batch["obs"])
        full = teacher.encode(batch["obs"], batch["goal"])
        dropped = (cond[:, -self.null_goal.shape[0]:] == self.null_goal).all(dim=1, keepdim=True)
        return torch.where(dropped, teacher.unconditioned(full), full)

    def distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample distance (B, T, A) x2 -> (B,)."""
        diff = (pred - target).flatten(1)
        if self.loss_name == "l2":
            return diff.pow(2).mean(1)
        c = 0.00054 * math.sqrt(diff.shape[1])
        return (diff.pow(2).sum(1) + c * c).sqrt() - c

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        teacher = self._teacher_on_device()
        cond, a = self.encode_batch(batch)
        with torch.no_grad():
            t_cond = self._teacher_cond(teacher, batch, cond)
        n = torch.randint(0, self.num_scales - 1, (a.shape[0],), device=a.device)
        s_lo, s_hi = self.distill_sigmas[n], self.distill_sigmas[n + 1]
        x_hi = a + s_hi.view(-1, 1, 1) * torch.randn_like(a)
        with torch.no_grad():
            x_lo = teacher_ode_step(lambda x, s: teacher._predict(x, s, t_cond), x_hi, s_hi, s_lo, self.ode_solver)
            target = self._target_predict(x_lo, s_lo, cond.detach())
        loss = self.distance(self._predict(x_hi, s_hi, cond), target).mean()
        return loss, {}  # the trainer logs the loss itself (summed on device: no host sync per step)

    def extra_train_state(self) -> dict[str, torch.Tensor]:
        """Training state beyond the weights, for the trainer's checkpoint: the target network θ⁻
        ({``target_net.<name>``: CPU tensor}; empty before the first distillation step)."""
        t = self._unsaved.target
        return {} if t is None else {f"target_net.{k}": v.detach().cpu().clone() for k, v in t.state_dict().items()}

    def load_extra_train_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`extra_train_state` saved (the trainer calls it on resume, after the weights)."""
        prefix = "target_net."
        sd = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if sd:
            self._unsaved.target = None
            self._target_net().load_state_dict(sd)

    @torch.no_grad()
    def after_step(self) -> None:
        """θ⁻ ← μ·θ⁻ + (1 − μ)·θ (the trainer calls this after every optimizer step)."""
        tgt = list(self._target_net().parameters())
        torch._foreach_lerp_(tgt, [p.detach() for p in self.net.parameters()], 1.0 - self.target_ema)


# -- wiring for robopolicy-train ----------------------------------------------------------------------

def _teacher_dir(cfg: DictConfig) -> str | None:
    t = OmegaConf.select(cfg, "policy.teacher")
    return None if t in (None, "") else str(t)


def distillation_config(cfg: DictConfig) -> DictConfig:
    """With ``policy.teacher`` set: copy the teacher's net, normalisation and noise range into ``cfg``
    (in place; returned), so the saved student config rebuilds the same network without the teacher."""
    teacher = _teacher_dir(cfg)
    if teacher is None:
        return cfg
    from robopolicy.api import read_checkpoint_config
    from robopolicy.training.checkpoint import find_checkpoint

    tcfg, _ = read_checkpoint_config(find_checkpoint(teacher, "last"))
    target = str(OmegaConf.select(tcfg, "policy._target_") or "")
    if not target.endswith("BESOPolicy"):
        raise ConfigError(f"policy.teacher={teacher} is a {target or 'non-policy'} run; distil from a BESO run (policy=beso).")
    with open_dict(cfg):
        cfg.net = copy.deepcopy(tcfg.net)
        if "norm" in tcfg:
            cfg.norm = copy.deepcopy(tcfg.norm)
        for k in TEACHER_POLICY_KEYS:
            if k in tcfg.policy:
                cfg.policy[k] = copy.deepcopy(tcfg.policy[k])
    return cfg


def attach_teacher(policy, cfg: DictConfig) -> None:
    """Load ``policy.teacher`` (when set) and attach it to the freshly built student (no-op otherwise)."""
    teacher = _teacher_dir(cfg)
    if teacher is None or not isinstance(policy, ConsistencyPolicy):
        if teacher is not None:
            raise ConfigError("policy.teacher is set but the policy is not a consistency student; use policy=consistency.")
        return
    from robopolicy.api import load

    policy.set_teacher(load(teacher, device="cpu"))
