"""The mapper ensemble learns a tiny synthetic image -> position mapping through the Trainer."""

import numpy as np
import pytest
import torch

from robopolicy.errors import DataError
from robopolicy.semantics.mapper import MapperEnsemble, build_mapper, train_mapper
from robopolicy.training.config import trainer_config


def _dots(n, rng, size=16):
    """Images with one bright 2x2 dot; semantics = its (x, y) in [-1, 1]."""
    xy = rng.uniform(-0.8, 0.8, size=(n, 2)).astype(np.float32)
    imgs = np.zeros((n, 1, size, size, 3), np.uint8)
    cols = ((xy[:, 0] + 1) / 2 * (size - 2)).round().astype(int)
    rows = ((1 - (xy[:, 1] + 1) / 2) * (size - 2)).round().astype(int)
    for i, (r, c) in enumerate(zip(rows, cols)):
        imgs[i, 0, r : r + 2, c : c + 2] = 255
    return imgs, xy


TRAIN = {"steps": 400, "batch_size": 32, "progress": False, "device": "cpu", "ema": {"enabled": False},
         "optim": {"lr": 3e-3, "warmup_steps": 20}, "val_every": 0, "ckpt_every": 0, "log_every": 100,
         "wandb": {"mode": "disabled"}}
MAPPER = {"members": 3, "n_frames": 1, "hidden_dim": 32, "color_jitter": 0.0,
          "encoder": {"_target_": "robopolicy.nets.encoders.SmallConvEncoder", "feature_dim": 32, "channels": [16, 16, 16, 16],
                      "strides": [2, 1, 1, 1], "padding": 1, "activation": "mish", "groups": 4, "plain_last": True, "num_kp": 8}}


def test_mapper_learns_dot_position(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x_tr, y_tr = _dots(200, rng)
    x_te, y_te = _dots(50, rng)
    model = build_mapper(MAPPER, (16, 16, 3), [-1, -1], [1, 1])
    before = np.abs(model.predict(x_te)[0] - y_te).mean()
    model = train_mapper(model, x_tr, y_tr, trainer_config(TRAIN), tmp_path / "run", seed=0, bootstrap=True)
    mean, members = model.predict(x_te)
    err = np.abs(mean - y_te).mean()
    baseline = np.abs(y_te - y_tr.mean(0)).mean()
    assert members.shape == (3, 50, 2)
    assert err < 0.25 * baseline and err < before, (err, baseline, before)
    assert (tmp_path / "run" / "checkpoints" / "latest.json").exists()
    # Members disagree more on an image unlike the training set than on training images.
    odd = np.full((1, 1, 16, 16, 3), 128, np.uint8)
    spread = lambda m: m.var(0).mean()  # noqa: E731
    assert spread(model.predict(odd)[1]) > spread(model.predict(x_tr[:50])[1])


def test_mapper_rejects_wrong_frames():
    model = MapperEnsemble((16, 16, 3), n_frames=2, semantics_low=[0, 0], semantics_high=[1, 1], members=1,
                           hidden_dim=MAPPER["hidden_dim"], color_jitter=MAPPER["color_jitter"], encoder=MAPPER["encoder"],
                           reading_low=None, reading_high=None)
    with pytest.raises(DataError, match="n_frames"):
        model.predict(np.zeros((1, 1, 16, 16, 3), np.uint8))
    assert model.predict(np.zeros((4, 2, 16, 16, 3), np.uint8))[1].shape == (1, 4, 2)


# A mapper's and the VAE's losses on one fixed batch and seed, recorded with their own encoder and
# preprocessing before they used the shared ones (commit ce0a36e): they must not move.
RECORDED_MAPPER_LOSS = 0.3929077088832855
RECORDED_VAE_LOSS = 65.23406982421875
TINY_ENCODER = {"_target_": "robopolicy.nets.encoders.SmallConvEncoder", "feature_dim": 16, "channels": [8, 8, 8, 8],
                "strides": [2, 1, 1, 1], "padding": 1, "activation": "mish", "groups": 4, "plain_last": True, "num_kp": 4}


def _recorded_batch():
    g = np.random.default_rng(0)
    return {"image": torch.as_tensor(g.integers(0, 256, (4, 2, 16, 16, 3), dtype=np.uint8)),
            "semantics": torch.as_tensor(g.uniform(-1, 1, (4, 2)).astype(np.float32)), "weights": torch.ones(4, 2)}


def test_mapper_loss_is_the_recorded_one():
    torch.manual_seed(0)
    model = build_mapper({"members": 2, "n_frames": 2, "hidden_dim": 16, "color_jitter": 0.05, "encoder": TINY_ENCODER},
                         (16, 16, 3), [-1, -1], [1, 1]).train()
    torch.manual_seed(3)
    assert float(model.compute_loss(_recorded_batch())[0]) == pytest.approx(RECORDED_MAPPER_LOSS, rel=1e-6)


def test_vae_loss_is_the_recorded_one():
    from robopolicy.semantics.vae import ConvVAE

    torch.manual_seed(0)
    vae = ConvVAE(image_size=16, latent_dim=4, channels=8, beta=1.0)
    torch.manual_seed(3)
    assert float(vae.compute_loss({"image": _recorded_batch()["image"][:, 0]})[0]) == pytest.approx(RECORDED_VAE_LOSS, rel=1e-6)


def test_mapper_without_an_encoder_is_a_config_error():
    from robopolicy.errors import ConfigError

    with pytest.raises(ConfigError, match="mapper.encoder"):
        MapperEnsemble((16, 16, 3), n_frames=1, semantics_low=[0], semantics_high=[1], encoder=None, members=1, hidden_dim=8,
                       color_jitter=0.0, reading_low=None, reading_high=None)
