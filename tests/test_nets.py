"""Denoisers and observation encoders (robopolicy.nets)."""

import numpy as np
import pytest
import torch

from hydra.utils import get_class

from robopolicy.data.normalize import Normalizer
from robopolicy.defaults import constructor_kwargs, group_config
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import ConfigError
from robopolicy.nets.common import has_batchnorm
from robopolicy.policies.bc import BCPolicy

A, T, C, B = 3, 8, 10, 4


def make_net(name: str, horizon: int = T, **over):
    """conf/net/<name>.yaml with ``over`` changed, built for action_dim A, cond_dim C."""
    cfg = group_config("net", name, over)
    return get_class(cfg._target_)(A, horizon, C, **constructor_kwargs(cfg))


def bc(spec, norm, **over):
    """conf/policy/bc.yaml with ``over`` changed, at horizons To=2, Tp=4, Ta=2."""
    cfg = group_config("policy", "bc", over, context={"task": {"obs_horizon": 2, "action_horizon": 4, "exec_horizon": 2}})
    return BCPolicy(spec, norm, **constructor_kwargs(cfg))


def make_nets():
    return {
        "unet": make_net("unet", down_dims=[16, 32], kernel_size=3, n_groups=4, t_embed_dim=16),
        "transformer": make_net("transformer", d_model=32, n_heads=2, n_layers=2, dropout=0.0),
        "mlp": make_net("mlp", hidden_dims=[32, 32], t_embed_dim=16),
    }


@pytest.mark.parametrize("name", ["unet", "transformer", "mlp"])
def test_denoiser_signature_conditioning_and_no_batchnorm(name):
    torch.manual_seed(0)
    net = make_nets()[name].eval()
    x, t, cond = torch.randn(B, T, A), torch.rand(B) * 50, torch.randn(B, C)
    y = net(x, t, cond)
    assert y.shape == (B, T, A) and torch.isfinite(y).all()
    assert not torch.allclose(y, net(x, t, torch.randn(B, C)))  # cond is used
    assert not torch.allclose(y, net(x, t + 10.0, cond))  # noise level is used
    assert torch.allclose(net(x, torch.tensor(3.0), cond), net(x, torch.full((B,), 3.0), cond))  # scalar t broadcasts
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert not has_batchnorm(net)


def test_unet_rejects_horizon_not_divisible():
    with pytest.raises(ConfigError, match="divisible"):
        make_net("unet", horizon=6, down_dims=[16, 32, 64])


def test_causal_transformer_does_not_look_ahead():
    torch.manual_seed(0)
    net = make_net("transformer", d_model=32, n_heads=2, n_layers=2, dropout=0.0, causal=True).eval()
    x, t, cond = torch.randn(B, T, A), torch.rand(B), torch.randn(B, C)
    x2 = x.clone()
    x2[:, 5:] += 1.0
    y, y2 = net(x, t, cond), net(x2, t, cond)
    assert torch.allclose(y[:, :5], y2[:, :5], atol=1e-5)
    assert not torch.allclose(y[:, 5:], y2[:, 5:])


def test_image_encoder_on_uint8_history_without_batchnorm():

    torch.manual_seed(0)
    spec = EnvSpec(obs={"cam": ObsKeySpec((72, 72, 3), "uint8", "rgb"), "state": ObsKeySpec((4,))}, action_dim=2,
                   action_low=(-1.0,) * 2, action_high=(1.0,) * 2, max_episode_steps=10)
    rng = np.random.default_rng(0)
    norm = Normalizer.fit({"state": rng.normal(size=(50, 4)).astype(np.float32),
                           "action": rng.uniform(-1, 1, size=(50, 2)).astype(np.float32)}, {"state": "meanstd", "action": "minmax"})
    policy = bc(spec, norm, hidden_dims=[32], encoder={"rgb_feature_dim": 16, "num_kp": 8, "crop_shape": [64, 64]})
    assert not has_batchnorm(policy)
    assert any(isinstance(m, torch.nn.GroupNorm) for m in policy.obs_encoder.modules())
    obs = {"cam": rng.integers(0, 256, size=(3, 2, 72, 72, 3), dtype=np.uint8), "state": rng.normal(size=(3, 2, 4)).astype(np.float32)}
    feats = policy.obs_encoder(obs)
    assert feats.shape == (3, 2 * (16 + 4))
    batch = {"obs": {k: torch.as_tensor(v) for k, v in obs.items()}, "action": torch.rand(3, 4, 2) * 2 - 1}
    loss, _ = policy.compute_loss(batch)
    loss.backward()
    assert policy.obs_encoder.encoders["cam"].backbone.nets[0].weight.grad is not None
    policy.eval()
    out = policy.sample(obs, n=2)
    assert out.shape == (3, 2, 3, 2) and torch.isfinite(out).all()
    # a bright blob moved across the image moves the spatial-softmax keypoints: the camera is used
    left, right = np.zeros((1, 2, 72, 72, 3), np.uint8), np.zeros((1, 2, 72, 72, 3), np.uint8)
    left[..., 8:24, 8:24, :], right[..., 44:60, 44:60, :] = 255, 255
    state = obs["state"][:1]
    f_left = policy.obs_encoder({"cam": left, "state": state})
    f_right = policy.obs_encoder({"cam": right, "state": state})
    assert (f_left - f_right).abs().max().item() > 1e-4
    with pytest.raises(ConfigError, match="at least 64x64"):
        bc(spec, norm, encoder={"crop_shape": [28, 28]})
