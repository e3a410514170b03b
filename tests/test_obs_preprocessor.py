"""The one observation preprocessor (robopolicy.nets.obs_preprocessor) and what must not change with it."""

import numpy as np
import pytest
import torch

from robopolicy.data.normalize import Normalizer
from robopolicy.defaults import constructor_kwargs, encoder_config, group_config
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import DataError
from robopolicy.nets.encoders import ObsEncoder
from robopolicy.nets.obs_preprocessor import ObservationPreprocessor, images_to_float
from robopolicy.policies.bc import BCPolicy
from robopolicy.value.critic import Critic
from robopolicy.value.offline_rl import IQL

from _value_toys import SPEC as CRITIC_SPEC
from test_policies import fixed_batch, make

# Encoder settings: the policies' encoder block (conf/obs_encoder/default.yaml), conf/encoder/small_cnn.yaml over it for images,
# with a tiny conv stem.
STATE_ENCODER = encoder_config()
TINY_RGB = {"feature_dim": 8, "channels": [8, 8], "strides": [2, 1], "num_kp": 4}
SMALL = encoder_config("small_cnn", {"rgb": TINY_RGB, "augment": None})
CAM_SPEC = EnvSpec(obs={"cam": ObsKeySpec((16, 16, 3), "uint8", "rgb"), "state": ObsKeySpec((3,))}, action_dim=2,
                   action_low=(-1.0,) * 2, action_high=(1.0,) * 2, max_episode_steps=10)

# Losses of tiny state policies and a critic on one fixed batch and seed, recorded with the code before the
# shared preprocessor (commit ce0a36e, the policies' and critic's own preprocessing): they must not move.
RECORDED_POLICY_LOSS = {("bc", "mlp", False): 0.47921207547187805, ("diffusion", "unet", False): 1.2215189933776855,
                        ("beso", "mlp", True): 1.262841820716858}
RECORDED_CRITIC_LOSS = 0.5285176038742065
# The same for an image BC policy and an image critic (small conv encoder, shift + colour augmentation).
RECORDED_IMAGE_POLICY_LOSS = 0.7125977277755737
RECORDED_IMAGE_CRITIC_LOSS = 1.7950149774551392
RECORDED_SCORES = [-0.5663092136383057, -0.3311811089515686, -0.5101130604743958, -0.4450896382331848, -0.38902896642684937,
                   -0.11207552999258041, -0.06316271424293518, -0.16065312922000885, -0.07267855107784271, 0.00782950222492218,
                   -0.5791990756988525, -0.7055095434188843, -0.6038076281547546, -0.2450733482837677, -0.5074823498725891]
AUGMENTED = encoder_config("small_cnn", {"rgb": TINY_RGB, "augment": {"shift_px": 2, "brightness": 0.1, "contrast": 0.1, "offset": 0.0}})


def _critic_kwargs(**kw) -> dict:
    """conf/critic/iql.yaml's settings at To = 2 with ``kw`` changed (the algorithm is passed separately)."""
    cfg = group_config("critic", "iql", {"obs_horizon": 2, **kw}, context={"task": {"obs_horizon": 2}})
    return {k: v for k, v in constructor_kwargs(cfg).items() if k != "algo"}


def cam_normalizer() -> Normalizer:
    rng = np.random.default_rng(0)
    return Normalizer.fit({"state": rng.normal(size=(40, 3)).astype(np.float32), "action": rng.uniform(-1, 1, (40, 2)).astype(np.float32)},
                          {"state": "meanstd", "action": "minmax"})


@pytest.mark.parametrize("policy, net, goal", sorted(RECORDED_POLICY_LOSS))
def test_state_policy_loss_is_the_recorded_one(policy, net, goal):
    p = make(policy, net, goal=goal).train()
    torch.manual_seed(3)
    loss, _ = p.compute_loss(fixed_batch())
    assert float(loss) == pytest.approx(RECORDED_POLICY_LOSS[(policy, net, goal)], rel=1e-6)


def _state_critic() -> Critic:
    rng = np.random.default_rng(0)
    norm = Normalizer.fit({"state": rng.normal(size=(50, 2)).astype(np.float32), "action": rng.uniform(-1, 1, (50, 2)).astype(np.float32)},
                          {"state": "meanstd", "action": "minmax"})
    torch.manual_seed(0)
    return Critic(CRITIC_SPEC, norm, IQL(expectile=0.7, polyak=0.005), **_critic_kwargs(hidden_dims=[32, 32]))


def test_critic_loss_is_the_recorded_one():
    critic = _state_critic()
    g, b = torch.Generator().manual_seed(1), 8
    batch = {"obs": {"state": torch.randn(b, 2, 2, generator=g)}, "action": torch.rand(b, 1, 2, generator=g) * 2 - 1,
             "reward": torch.rand(b, generator=g), "discount": torch.full((b,), 0.98), "done": torch.zeros(b),
             "next_obs": {"state": torch.randn(b, 2, 2, generator=g)}, "next_action": torch.rand(b, 1, 2, generator=g) * 2 - 1,
             "mc_return": torch.rand(b, generator=g)}
    torch.manual_seed(3)
    loss, _ = critic.compute_loss(batch)
    assert float(loss) == pytest.approx(RECORDED_CRITIC_LOSS, rel=1e-6)


def _image_batch() -> dict:
    g = np.random.default_rng(1)
    return {"obs": {"cam": torch.as_tensor(g.integers(0, 256, (4, 2, 16, 16, 3), dtype=np.uint8)),
                    "state": torch.as_tensor(g.normal(size=(4, 2, 3)).astype(np.float32))},
            "action": torch.as_tensor(g.uniform(-1, 1, (4, 4, 2)).astype(np.float32))}


def test_image_policy_loss_is_the_recorded_one():
    torch.manual_seed(0)
    policy = BCPolicy(CAM_SPEC, cam_normalizer(), hidden_dims=[16], dropout=0.0, obs_keys=None, goal_keys=None, cond_drop_prob=0.0, obs_horizon=2, action_horizon=4, exec_horizon=2,
                      encoder=AUGMENTED).train()
    torch.manual_seed(3)
    assert float(policy.compute_loss(_image_batch())[0]) == pytest.approx(RECORDED_IMAGE_POLICY_LOSS, rel=1e-6)


def test_image_critic_loss_is_the_recorded_one():
    torch.manual_seed(0)
    critic = Critic(CAM_SPEC, cam_normalizer(), IQL(expectile=0.7, polyak=0.005),
                    **_critic_kwargs(hidden_dims=[16], encoder=AUGMENTED)).train()
    b = _image_batch()
    batch = {"obs": b["obs"], "next_obs": b["obs"], "action": b["action"][:, :1], "next_action": b["action"][:, 1:2],
             "reward": torch.ones(4), "discount": torch.full((4,), 0.98), "done": torch.zeros(4), "mc_return": torch.ones(4)}
    torch.manual_seed(3)
    assert float(critic.compute_loss(batch)[0]) == pytest.approx(RECORDED_IMAGE_CRITIC_LOSS, rel=1e-6)


def test_critic_scores_of_a_longer_history_are_the_recorded_ones():
    """V-GPS hands the critic (To=2) its policy's 4-step history; recorded before the shared preprocessor (ce0a36e)."""
    critic = _state_critic()
    g = np.random.default_rng(2)
    obs = {"state": g.normal(size=(3, 4, 2)).astype(np.float32)}
    scores = critic.score(obs, torch.as_tensor(g.uniform(-1, 1, (3, 5, 2, 2)).astype(np.float32)))
    np.testing.assert_allclose(scores.flatten().numpy(), RECORDED_SCORES, rtol=1e-6, atol=1e-7)  # float32: one score is near 0


def test_state_dict_names_are_the_encoders_and_the_normalizer_is_saved_once():
    torch.manual_seed(0)
    policy = BCPolicy(CAM_SPEC, cam_normalizer(), hidden_dims=[16], dropout=0.0, obs_keys=None, goal_keys=None, cond_drop_prob=0.0, obs_horizon=2, action_horizon=4, exec_horizon=2, encoder=SMALL)
    names = {k for k in policy.state_dict() if k.startswith("obs_encoder.")}
    expected = {f"obs_encoder.{k}" for k in ObsEncoder(CAM_SPEC, ["cam", "state"], 2, **SMALL).state_dict()}
    assert names == expected


def test_only_the_last_horizon_steps_are_read():
    prep = ObservationPreprocessor(CRITIC_SPEC, ["state"], 2, Normalizer.empty({"state": (2,), "action": (2,)}), STATE_ENCODER)
    hist = torch.randn(4, 5, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(prep({"state": hist}), prep({"state": hist[:, -2:]}))


def test_a_history_shorter_than_the_horizon_is_a_data_error():
    prep = ObservationPreprocessor(CRITIC_SPEC, ["state"], 3, Normalizer.empty({"state": (2,), "action": (2,)}), STATE_ENCODER)
    with pytest.raises(DataError, match="at least 3 steps"):
        prep({"state": np.zeros((1, 2, 2), np.float32)})


def test_lowdim_keys_are_normalised_with_the_models_normalizer():
    norm = cam_normalizer()
    prep = ObservationPreprocessor(CAM_SPEC, ["state"], 2, norm, STATE_ENCODER)
    x = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(prep.prepare({"state": x}, torch.device("cpu"))["state"], norm.normalize("state", x))


def test_images_become_float_channels_first_in_unit_range():
    img = torch.arange(2 * 4 * 5 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).view(2, 4, 5, 3)
    torch.testing.assert_close(images_to_float(img), img.permute(0, 3, 1, 2).float() / 255.0)


def test_a_goal_is_one_step_without_a_time_axis():
    prep = ObservationPreprocessor(CRITIC_SPEC, ["state"], None, Normalizer.empty({"state": (2,), "action": (2,)}), STATE_ENCODER, what="goal")
    goal = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(prep({"state": goal}), goal)


def test_nan_in_a_tensor_observation_is_a_data_error():
    prep = ObservationPreprocessor(CRITIC_SPEC, ["state"], 2, Normalizer.empty({"state": (2,), "action": (2,)}), STATE_ENCODER)
    bad = torch.zeros(1, 2, 2)
    bad[0, 1, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        prep({"state": bad})


def test_small_conv_encoder_plain_last_leaves_the_last_conv_without_norm_and_activation():
    from robopolicy.nets.encoders import SmallConvEncoder

    enc = SmallConvEncoder((16, 16, 3), feature_dim=8, channels=[4, 4], strides=[2, 1], num_kp=4, groups=2, padding=1,
                           activation="mish", plain_last=True)
    assert [type(m).__name__ for m in enc.trunk] == ["Conv2d", "GroupNorm", "Mish", "Conv2d"]


def test_small_conv_encoder_unknown_activation_is_a_config_error():
    from robopolicy.errors import ConfigError
    from robopolicy.nets.encoders import SmallConvEncoder

    rgb = constructor_kwargs(encoder_config("small_cnn").rgb)
    with pytest.raises(ConfigError, match="activation"):
        SmallConvEncoder((16, 16, 3), **{**rgb, "channels": [4], "strides": [1], "activation": "gelu"})


def test_augment_offset_shifts_every_pixel_of_a_sample_by_one_amount():
    from robopolicy.nets.augment import ImageAugment

    aug = ImageAugment(shift_px=0, brightness=0.0, contrast=0.0, offset=0.1).train()
    x = torch.full((3, 2, 3, 4, 4), 0.5)
    torch.manual_seed(0)
    shift = aug(x) - x
    torch.testing.assert_close(shift, shift[:, :1, :1, :1, :1].expand_as(shift))
    assert float(shift.abs().amax()) > 0.0


def test_a_deep_copy_preprocesses_with_its_own_normalizer():
    import copy

    policy = make("bc", "mlp")
    twin = copy.deepcopy(policy)  # what the EMA does
    assert twin.obs_encoder.normalizer is twin.normalizer


def test_a_partial_augment_block_is_a_config_error():
    from robopolicy.errors import ConfigError

    settings = encoder_config("small_cnn", {"rgb": TINY_RGB})
    settings.augment = {"shift_px": 2}
    with pytest.raises(ConfigError, match=r"encoder.augment settings lack \['brightness', 'contrast', 'offset'\]"):
        ObsEncoder(CAM_SPEC, ["cam"], 1, **settings)
