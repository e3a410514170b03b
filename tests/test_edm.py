"""EDM math and σ-space samplers (robopolicy.policies.edm / samplers)."""

import math

import pytest
import torch
from diffusers import EDMEulerScheduler

from robopolicy.defaults import group_config
from robopolicy.errors import ConfigError
from robopolicy.policies.edm import (
    cfg_combine,
    edm_coefficients,
    edm_raw_output_from_denoised,
    edm_training_target,
    sample_sigma_loglogistic,
    sample_sigma_lognormal,
)
from robopolicy.policies.samplers import EDM_SAMPLERS, make_edm_sampler

SD = 0.5
# steps, schedule and rho of conf/policy/beso.yaml; each test changes what it checks
BESO_SAMPLER = dict(group_config("policy", "beso", context={"task": {"obs_horizon": 2, "action_horizon": 16, "exec_horizon": 8}}).sampler)


def test_preconditioning_at_sigma_data():
    c = edm_coefficients(torch.tensor(SD), SD)
    assert c.c_skip.item() == pytest.approx(0.5)
    assert c.c_out.item() == pytest.approx(SD / math.sqrt(2))
    assert c.c_in.item() == pytest.approx(1 / (SD * math.sqrt(2)))
    assert c.c_noise.item() == pytest.approx(math.log(SD) / 4)


def test_preconditioning_matches_diffusers():
    sched = EDMEulerScheduler(sigma_data=SD)
    x, raw = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    for s in [0.005, 0.1, 1.0]:
        c = edm_coefficients(torch.tensor(s), SD)
        assert torch.allclose(c.c_in * x, sched.precondition_inputs(x, s))
        assert torch.allclose(c.c_skip * x + c.c_out * raw, sched.precondition_outputs(x, raw, s), atol=1e-6)
        assert c.c_noise.item() == pytest.approx(sched.precondition_noise(s).item())
        d = c.c_skip * x + c.c_out * raw
        # float32 round-off in d is amplified by 1/c_out (200 at σ=0.005); diffusers multiplies it back
        assert torch.allclose(edm_raw_output_from_denoised(x, d, s, SD), raw, atol=1e-3)


def test_training_target_gives_edm_weighted_loss():
    a, x, raw = torch.randn(5, 4, 2), torch.randn(5, 4, 2), torch.randn(5, 4, 2)
    sigma = torch.rand(5, 1, 1) + 0.01
    c = edm_coefficients(sigma, SD)
    denoised = c.c_skip * x + c.c_out * raw
    lhs = ((raw - edm_training_target(a, x, sigma, SD)) ** 2).mean(dim=(1, 2))
    rhs = (((denoised - a) ** 2) / c.c_out**2).mean(dim=(1, 2))
    assert torch.allclose(lhs, rhs, rtol=1e-4)


@pytest.mark.parametrize("density,cdf", [
    (sample_sigma_loglogistic, lambda z: torch.sigmoid(z)),
    (sample_sigma_lognormal, lambda z: torch.distributions.Normal(0.0, 1.0).cdf(z)),
])
def test_sigma_densities_are_truncated_and_have_the_right_cdf(density, cdf):
    loc, scale, lo, hi = math.log(SD), 0.5, 0.005, 1.0
    g = torch.Generator().manual_seed(0)
    s = density(20000, loc, scale, lo, hi, generator=g)
    assert s.min() >= lo * (1 - 1e-5) and s.max() <= hi * (1 + 1e-5)
    z = lambda v: torch.tensor((math.log(v) - loc) / scale)  # noqa: E731
    for q in [0.05, 0.2, 0.5]:
        expected = (cdf(z(q)) - cdf(z(lo))) / (cdf(z(hi)) - cdf(z(lo)))
        assert (s <= q).float().mean().item() == pytest.approx(expected.item(), abs=0.015)


def test_cfg_combine():
    c, u = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.equal(cfg_combine(c, u, 0.0), u)
    assert torch.allclose(cfg_combine(c, u, 1.0), c)
    assert torch.allclose(cfg_combine(c, u, 2.0), 2 * c - u)


# A Gaussian data distribution N(mu, s²) has the exact denoiser D(x, σ) = mu + s²/(s²+σ²)(x − mu), and
# the probability-flow ODE from x_T = σ_max·ε maps to mu + s(σ_max ε − mu)/sqrt(s² + σ_max²).
MU, S, SMAX = 0.3, 0.1, 1.0


def gaussian_denoiser(x, sigma):
    sig = torch.as_tensor(sigma, dtype=x.dtype).view(-1, 1, 1)  # samplers pass one float level (or an (N,) tensor)
    return MU + S**2 / (S**2 + sig**2) * (x - MU)


@pytest.mark.parametrize("name", sorted(EDM_SAMPLERS))
@pytest.mark.parametrize("schedule", ["karras", "exponential"])
def test_samplers_converge_to_the_exact_flow_of_a_known_gaussian(name, schedule):
    eps = torch.randn(20000, 1, 1, generator=torch.Generator().manual_seed(0))
    exact = MU + S * (SMAX * eps - MU) / math.sqrt(S**2 + SMAX**2)
    errors = []
    for steps in [3, 10, 40]:
        x = make_edm_sampler(BESO_SAMPLER | {"name": name, "steps": steps, "schedule": schedule}, 0.005, SMAX, SD).sample(gaussian_denoiser, eps)
        assert torch.isfinite(x).all()
        errors.append((x - exact).abs().mean().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.005
    assert x.std().item() == pytest.approx(S * SMAX / math.sqrt(S**2 + SMAX**2), rel=0.05)


def test_ddim_equals_euler_and_one_step_is_the_denoiser():
    eps = torch.randn(64, 4, 2, generator=torch.Generator().manual_seed(1))
    for steps in [1, 3]:
        outs = [make_edm_sampler(BESO_SAMPLER | {"name": n, "steps": steps}, 0.005, SMAX, SD).sample(gaussian_denoiser, eps) for n in ["ddim", "euler"]]
        assert torch.allclose(outs[0], outs[1], atol=1e-5)
    one = make_edm_sampler(BESO_SAMPLER | {"name": "dpmsolver++", "steps": 1, "schedule": "exponential"}, 0.005, SMAX, SD).sample(gaussian_denoiser, eps)
    assert torch.allclose(one, gaussian_denoiser(eps * SMAX, torch.full((64,), SMAX)))


def test_sigma_schedule_endpoints_and_evaluation_count():
    for schedule in ["karras", "exponential"]:
        for steps in [1, 3, 10]:
            s = make_edm_sampler(BESO_SAMPLER | {"name": "ddim", "steps": steps, "schedule": schedule}, 0.005, SMAX, SD).sigmas()
            assert len(s) == steps + 1 and s[0].item() == pytest.approx(SMAX) and s[-1].item() == 0.0
            assert torch.all(s[:-1] > s[1:])
            if steps > 1:
                assert s[-2].item() == pytest.approx(0.005, rel=1e-4)
            calls = []
            make_edm_sampler(BESO_SAMPLER | {"name": "dpmsolver++", "steps": steps, "schedule": schedule}, 0.005, SMAX, SD).sample(
                lambda x, sig: calls.append(1) or gaussian_denoiser(x, sig), torch.randn(2, 4, 2))  # noqa: B023 - called within this iteration
            assert len(calls) == steps


def test_unknown_edm_sampler_lists_valid_names():
    with pytest.raises(ConfigError, match="ddim.*dpmsolver.*euler"):
        make_edm_sampler(BESO_SAMPLER | {"name": "heun"}, 0.005, 1.0, SD)
    with pytest.raises(ConfigError):
        make_edm_sampler(BESO_SAMPLER | {"name": "ddim", "schedule": "linear"}, 0.005, 1.0, SD)
