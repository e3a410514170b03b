"""Image encoders for visuomotor policies: augmentation on the device and only in training,
multi-camera shapes (shared and per camera), and a tiny image policy that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.data.normalize import Normalizer
from robopolicy.defaults import encoder_config
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.nets.augment import ImageAugment, random_shift
from robopolicy.nets.encoders import ObsEncoder, SmallConvEncoder, SmallConvFlatEncoder
from robopolicy.policies.build import build_policy

TINY_RGB = {"feature_dim": 8, "channels": [8, 8], "strides": [2, 1], "num_kp": 4}  # over conf/encoder/small_cnn.yaml's rgb


def two_cam_spec(size=20):
    return EnvSpec(obs={"agent_pos": ObsKeySpec((2,)), "a": ObsKeySpec((size, size, 3), "uint8", "rgb"),
                        "b": ObsKeySpec((size, size, 3), "uint8", "rgb")},
                   action_dim=2, action_low=(-1.0,) * 2, action_high=(1.0,) * 2, max_episode_steps=10,
                   extra={"privileged_keys": ["state"]})


def test_random_shift_moves_whole_pixels_within_the_pad():
    x = torch.zeros(1, 1, 1, 9, 9)
    x[..., 4, 4] = 1.0
    out = random_shift(x.expand(64, 1, 1, 9, 9).contiguous(), pad=2, generator=torch.Generator().manual_seed(0))
    pos = out.flatten(1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert set(rows.tolist()) == {2, 3, 4, 5, 6}
    assert set(cols.tolist()) == {2, 3, 4, 5, 6}
    assert torch.equal(out.flatten(1).sum(1), torch.ones(64))  # a copy, not a blur


def test_augment_is_identity_in_eval_and_random_in_train():
    aug = ImageAugment(shift_px=3, brightness=0.2, contrast=0.2, offset=0.0)
    x = torch.rand(4, 2, 3, 16, 16)
    aug.eval()
    assert torch.equal(aug(x), x)
    aug.train()
    assert not torch.equal(aug(x), x)


def test_augment_keeps_the_device_and_shares_a_shift_across_the_window_frames():
    aug = ImageAugment(shift_px=3, brightness=0.0, contrast=0.0, offset=0.0).train()
    frame = torch.rand(8, 1, 3, 16, 16)
    x = frame.expand(8, 2, 3, 16, 16).contiguous()  # both frames of each window identical
    out = aug(x)
    assert out.device == x.device
    assert out.dtype == x.dtype
    torch.testing.assert_close(out[:, 0], out[:, 1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augment_runs_on_cuda():
    out = ImageAugment(shift_px=2, brightness=0.0, contrast=0.0, offset=0.0).train()(torch.rand(2, 2, 3, 8, 8, device="cuda"))
    assert out.is_cuda


@pytest.mark.parametrize("shared", [False, True])
def test_two_camera_encoding_shapes(shared):
    enc = ObsEncoder(two_cam_spec(), ["agent_pos", "a", "b"], horizon=2, **encoder_config("small_cnn", {"rgb": TINY_RGB, "share_rgb_encoder": shared}))
    obs = {"agent_pos": torch.randn(3, 2, 2), "a": torch.rand(3, 2, 3, 20, 20), "b": torch.rand(3, 2, 3, 20, 20)}
    out = enc(obs)
    assert out.shape == (3, 2 * (2 + 8 + 8))
    n_image_encoders = sum(isinstance(m, SmallConvEncoder) for m in enc.modules())
    assert n_image_encoders == (1 if shared else 2)


def test_per_camera_features_differ_between_cameras():
    enc = ObsEncoder(two_cam_spec(), ["a", "b"], horizon=1, **encoder_config("small_cnn", {"rgb": TINY_RGB, "share_rgb_encoder": True})).eval()
    img = torch.rand(2, 1, 3, 20, 20)
    out = enc({"a": img, "b": img.flip(-1)}).view(2, 2, 8)
    assert not torch.allclose(out[:, 0], out[:, 1])


def tiny_encoder_overrides(name: str) -> list[str]:
    """``+encoder@policy.encoder=<name>`` (conf/encoder/) shrunk for 16 px test images."""
    kp = ["policy.encoder.rgb.num_kp=4"] if name == "small_cnn" else []
    return [f"+encoder@policy.encoder={name}", "policy.encoder.rgb.channels=[8,8]", "policy.encoder.rgb.strides=[2,1]",
            "policy.encoder.rgb.feature_dim=8", "policy.encoder.augment.shift_px=1", *kp]


def test_flat_encoder_reads_the_flattened_map_without_keypoints():
    """small_cnn_flat (conf/encoder/small_cnn_flat.yaml): the conv map goes whole into its head, no spatial softmax."""
    from robomimic.models.base_nets import SpatialSoftmax

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["task=multimodal", "dataset=x", "run_dir=x", *tiny_encoder_overrides("small_cnn_flat")])
    spec = EnvSpec(obs={"cam": ObsKeySpec((16, 16, 3), "uint8", "rgb")}, action_dim=2, action_low=(-1.0, -1.0),
                   action_high=(1.0, 1.0), max_episode_steps=10)
    enc = ObsEncoder(spec, ["cam"], horizon=1, **cfg.policy.encoder)
    assert not any(isinstance(m, SpatialSoftmax) for m in enc.modules())
    assert enc.encoders["cam"].proj[0].in_features == 8 * 5 * 5  # 16 px -> 7 (stride 2) -> 5: every cell of the map


def test_flat_encoder_features_follow_a_small_blob():
    """Moving a 2-pixel blob by two pixels changes the flattened-map features."""
    torch.manual_seed(0)
    enc = SmallConvFlatEncoder((16, 16, 3), feature_dim=8, channels=[8, 8], strides=[2, 1], groups=4, padding=0,
                               activation="relu", plain_last=False).eval()
    a, b = torch.zeros(2, 1, 3, 16, 16).unbind(0)
    a[:, :, 6:8, 6:8] = 1.0
    b[:, :, 6:8, 8:10] = 1.0
    with torch.no_grad():
        fa, fb = enc(a), enc(b)
    assert (fa - fb).abs().max() > 1e-3


@pytest.mark.parametrize("encoder", ["small_cnn", "small_cnn_flat"])
def test_tiny_image_policy_loss_decreases(encoder):
    """BESO + a small encoder on images whose bright pixel's position sets the action: the loss falls."""
    size = 16
    spec = EnvSpec(obs={"cam": ObsKeySpec((size, size, 3), "uint8", "rgb")}, action_dim=2, action_low=(-1.0, -1.0),
                   action_high=(1.0, 1.0), max_episode_steps=10, extra={"privileged_keys": ["state"]})
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["task=multimodal", "dataset=x", "run_dir=x", "policy=beso", "net=unet",
                                          "net.down_dims=[16,32]", "task.action_horizon=4", "task.obs_horizon=1",
                                          "task.exec_horizon=2", *tiny_encoder_overrides(encoder)])
    rng = np.random.default_rng(0)
    n = 64
    pos = rng.integers(2, size - 2, (n, 2))
    imgs = np.zeros((n, 1, size, size, 3), np.uint8)
    imgs[np.arange(n), 0, pos[:, 0], pos[:, 1]] = 255
    actions = np.repeat(((pos / (size - 1)) * 2 - 1)[:, None, :], 4, axis=1).astype(np.float32)
    norm = Normalizer.fit({"action": actions.reshape(-1, 2)}, {"action": "minmax"})
    torch.manual_seed(0)
    policy = build_policy(cfg, spec, norm).train()
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    batch = {"obs": {"cam": torch.from_numpy(imgs)}, "action": torch.from_numpy(actions)}

    def fixed_loss() -> float:  # the same noise levels and noise before and after training
        policy.eval()
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(123)
            loss = float(policy.compute_loss(batch)[0])
        policy.train()
        return loss

    before = fixed_loss()
    for _ in range(60):
        loss, _ = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert fixed_loss() < 0.75 * before
