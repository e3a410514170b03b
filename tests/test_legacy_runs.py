"""Runs saved before the encoder settings moved to conf/ still load, as the same nets.

Their config.yaml lacks settings the code used to default (a policy's encoder block had five keys, a
critic's was ``{}``, a SmallConvEncoder had no ``padding`` / ``activation`` / ``plain_last``, an
augment block no ``offset``); robopolicy.utils.legacy fills them from conf/legacy/encoder.yaml.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from robopolicy.api import load_run
from robopolicy.defaults import constructor_kwargs, group_config
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import ConfigError
from robopolicy.nets.encoders import ObsEncoder, encoder_setting_names
from robopolicy.utils.legacy import fill_legacy_settings
from robopolicy.value.critic import Critic
from robopolicy.value.offline_rl import IQL

from _value_toys import SPEC as STATE_SPEC
from _value_toys import unit_normalizer

# The encoder block of conf/policy/*.yaml before this change (commit 355de9b and earlier).
OLD_POLICY_ENCODER = {"lowdim_hidden_dims": [], "rgb_feature_dim": 64, "num_kp": 32, "crop_shape": None, "channels_per_group": 16}
# An image policy's encoder block as conf/encoder/small_cnn.yaml composed it when it was added (commit 11f9638), tiny stem.
OLD_SMALL_CNN = {**OLD_POLICY_ENCODER,
                 "rgb": {"_target_": "robopolicy.nets.encoders.SmallConvEncoder", "_partial_": True, "feature_dim": 8,
                         "channels": [8, 8], "strides": [2, 1], "num_kp": 4, "groups": 8},
                 "share_rgb_encoder": False, "augment": {"shift_px": 2, "brightness": 0.0, "contrast": 0.0},
                 "allow_privileged": [], "channels_last": False, "autocast_bf16": False, "compile": False}
# What the code defaulted then for the keys OLD_SMALL_CNN lacks: the net those runs were built with.
OLD_CODE_DEFAULTS = {"rgb": {"padding": 0, "activation": "relu", "plain_last": False}, "augment": {"offset": 0.0}}
CAM_SPEC = EnvSpec(obs={"cam": ObsKeySpec((16, 16, 3), "uint8", "rgb"), "state": ObsKeySpec((3,))}, action_dim=2,
                   action_low=(-1.0,) * 2, action_high=(1.0,) * 2, max_episode_steps=10)


@pytest.fixture
def run(tmp_path):
    from _eval_toys import make_untrained_run

    return make_untrained_run(tmp_path / "run", "multimodal", step=7, hidden=(8, 8))


def _make_old_style(run) -> None:
    path = run / "checkpoints" / "step_7" / "config.yaml"
    cfg = OmegaConf.load(path)
    cfg.policy.encoder = OLD_POLICY_ENCODER
    path.write_text(OmegaConf.to_yaml(cfg))


def test_a_policy_run_saved_with_the_old_encoder_block_loads_to_the_same_outputs(run):
    obs = {"state": np.random.default_rng(1).normal(size=(3, 2, 6)).astype(np.float32)}  # multimodal: state (6,), To = 2
    new = load_run(run, device="cpu").policy
    _make_old_style(run)
    old = load_run(run, device="cpu").policy
    torch.manual_seed(0)
    chunks_new = new.sample(obs, n=2)
    torch.manual_seed(0)
    torch.testing.assert_close(old.sample(obs, n=2), chunks_new)


def test_a_policy_run_saved_with_the_old_encoder_block_gets_every_setting(run):
    _make_old_style(run)
    assert sorted(load_run(run, device="cpu").cfg.policy.encoder) == sorted(encoder_setting_names())


def test_an_old_image_encoder_block_builds_the_net_of_the_old_code_defaults():
    filled = fill_legacy_settings(OmegaConf.create({"policy": {"encoder": OLD_SMALL_CNN}})).policy.encoder
    explicit = OmegaConf.merge(OLD_SMALL_CNN, OLD_CODE_DEFAULTS)
    torch.manual_seed(0)
    a = ObsEncoder(CAM_SPEC, ["cam", "state"], 2, **OmegaConf.to_container(filled)).eval()
    torch.manual_seed(0)
    b = ObsEncoder(CAM_SPEC, ["cam", "state"], 2, **OmegaConf.to_container(explicit)).eval()
    x = {"cam": torch.rand(2, 2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), "state": torch.zeros(2, 2, 3)}
    torch.testing.assert_close(a(x), b(x))


def test_a_critic_saved_with_an_empty_encoder_block_builds_as_with_conf_critic_iql():
    filled = fill_legacy_settings(OmegaConf.create({"critic": {"encoder": {}}})).critic.encoder
    kwargs = {k: v for k, v in constructor_kwargs(group_config("critic", "iql", {"obs_horizon": 2, "hidden_dims": [8]},
                                                               context={"task": {"obs_horizon": 2}})).items() if k != "algo"}
    torch.manual_seed(0)
    old = Critic(STATE_SPEC, unit_normalizer(), IQL(expectile=0.7, polyak=0.005), **{**kwargs, "encoder": OmegaConf.to_container(filled)})
    torch.manual_seed(0)
    new = Critic(STATE_SPEC, unit_normalizer(), IQL(expectile=0.7, polyak=0.005), **kwargs)
    obs, actions = {"state": torch.randn(3, 2, 2)}, torch.rand(3, 4, 1, 2) * 2 - 1
    torch.testing.assert_close(old.score(obs, actions), new.score(obs, actions))


def test_filling_keeps_the_settings_a_run_has():
    cfg = OmegaConf.create({"policy": {"encoder": {**OLD_SMALL_CNN, "num_kp": 5}}})
    assert fill_legacy_settings(cfg).policy.encoder.num_kp == 5


def test_a_config_without_encoder_settings_is_a_config_error():
    """A user's own policy YAML with a partial block is refused with a sentence, not filled."""
    from robopolicy.nets.obs_preprocessor import ObservationPreprocessor

    with pytest.raises(ConfigError, match=r"The encoder settings lack \['lowdim_hidden_dims'.*write the whole block"):
        ObservationPreprocessor(STATE_SPEC, ["state"], 2, unit_normalizer(), {"num_kp": 4})
