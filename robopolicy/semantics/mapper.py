"""Image-to-semantics mappers: an ensemble of M CNNs regressing normalised semantics from frames.

Input: the last ``n_frames`` camera frames ``(B, n_frames, H, W, 3)`` uint8 (stacked as channels).
Output: semantics normalised to [-1, 1] by the task's bounds (the model keeps the bounds as
buffers, so it is self-contained); :meth:`MapperEnsemble.predict` gives metres. The members differ
by initialisation and by online-bootstrap weights (Poisson(1) per sample and member, fixed per
sample), so their spread is an uncertainty for the variance acquisition.

The encoder is a Hydra ``_target_`` taking ``image_shape`` (H, W, C) and ``feature_dim``:
``robopolicy.nets.encoders.ImageEncoder`` (robomimic ResNet-18 + spatial softmax) or the policies'
``robopolicy.nets.encoders.SmallConvEncoder``, the default (conf/semantics.yaml: four padded 3x3
convs with Mish, the last one plain). Why the small one: an ensemble of five ResNet-18s costs about
0.15 GFLOP per 64x64 image per member, far too slow to retrain every active-learning round on two
CPU cores; four conv layers + robomimic's SpatialSoftmax locate the pusher and puck equally well on
these scenes. Frames become float in [0, 1] through the shared
:func:`~robopolicy.nets.obs_preprocessor.images_to_float`; the training jitter (gain and offset per
sample) is :class:`~robopolicy.nets.augment.ImageAugment`.

The output is the task's whole semantics vector, or the part of it the robot does not measure
itself (``semantics.proprio_semantics``, robopolicy/semantics/proprio.py): ``semantics_names`` says
which coordinates, in order, and travels in the checkpoint. A mapper saved without it predicts every
coordinate of its task (``semantics_names`` None).

Training goes through the one :class:`robopolicy.training.Trainer` (:func:`train_mapper`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

# Imported at module load on purpose: the Trainer pulls in triton (through diffusers and torch._dynamo),
# and importing triton after an EGL context exists segfaults (seen on CPU with Mesa EGL).
from robopolicy.training import Trainer  # noqa: E402
from robopolicy.errors import ConfigError, DataError
from robopolicy.nets.augment import ImageAugment
from robopolicy.nets.obs_preprocessor import images_to_float


class MapperEnsemble(nn.Module):
    """M members, each encoder + MLP head. ``forward``: images (B, K, H, W, 3) uint8 -> (M, B, D) normalised.

    ``semantics_names``: the D coordinates predicted, by name (set by :func:`build_mapper`); None = every
    coordinate of the task, in its order (mappers saved before the names were kept)."""

    semantics_names: tuple[str, ...] | None = None

    def __init__(self, image_shape: Sequence[int], n_frames: int, semantics_low: Sequence[float],
                 semantics_high: Sequence[float], encoder: Any, members: int, hidden_dim: int,
                 color_jitter: float):
        # No defaults: every value comes from conf/semantics.yaml's mapper block.
        super().__init__()
        if int(members) < 1 or int(n_frames) < 1:
            raise ConfigError(f"mapper.members={members} and mapper.n_frames={n_frames} must be at least 1.")
        if encoder is None or "_target_" not in encoder:
            raise ConfigError("The mapper needs an image encoder with a _target_; set mapper.encoder (conf/semantics.yaml has the default).")
        h, w, c = (int(s) for s in image_shape)
        enc_cfg = OmegaConf.create(encoder)
        self.n_frames, self.dim = int(n_frames), len(semantics_low)
        self.color_jitter = float(color_jitter)
        # Gain and offset in [1 - j, 1 + j] and [-j, j] per sample, training only (the same draw for all frames).
        self.jitter = ImageAugment(shift_px=0, brightness=self.color_jitter, contrast=0.0, offset=self.color_jitter)
        self.register_buffer("low", torch.tensor(semantics_low, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(semantics_high, dtype=torch.float32))
        self.members = nn.ModuleList()
        for _ in range(int(members)):
            enc = instantiate(enc_cfg, image_shape=(h, w, c * self.n_frames))
            head = nn.Sequential(nn.Linear(enc.out_dim, hidden_dim), nn.Mish(), nn.Linear(hidden_dim, self.dim))
            self.members.append(nn.Sequential(enc, head))

    def normalize(self, s: torch.Tensor) -> torch.Tensor:
        return 2 * (s - self.low) / (self.high - self.low) - 1

    def unnormalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z + 1) / 2 * (self.high - self.low) + self.low

    def _prep(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, K, H, W, 3) uint8 (or (B, H, W, 3)) -> (B, K * 3, H, W) float in [0, 1], jittered in training."""
        if images.ndim == 4:
            images = images[:, None]
        if images.ndim != 5 or images.shape[1] != self.n_frames or images.shape[-1] != 3:
            raise DataError(f"The mapper expects images (B, {self.n_frames}, H, W, 3), got {tuple(images.shape)}; "
                            "pass the last mapper.n_frames frames.")
        x = self.jitter(images_to_float(images.to(self.low.device)))  # (B, K, 3, H, W)
        return x.flatten(1, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self._prep(images)
        return torch.stack([m(x) for m in self.members])

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """batch: image (B, K, H, W, 3) uint8, semantics (B, D) metres, weights (B, M) bootstrap weights."""
        pred = self(batch["image"])                                        # (M, B, D)
        target = self.normalize(batch["semantics"].float())[None]         # (1, B, D)
        w = batch["weights"].float().T                                     # (M, B)
        mse = ((pred - target) ** 2).mean(-1)                              # (M, B)
        loss = ((w * mse).sum(1) / w.sum(1).clamp_min(1.0)).sum()
        return loss, {"mse": float(mse.mean().detach())}

    @torch.no_grad()
    def predict(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """images (N, K, H, W, 3) uint8 -> mean (N, D) metres, member predictions (M, N, D) normalised."""
        was = self.training
        self.eval()
        outs = []
        for i in range(0, len(images), batch_size):
            outs.append(self(torch.as_tensor(np.asarray(images[i : i + batch_size]))).cpu())
        self.train(was)
        z = torch.cat(outs, dim=1) if outs else torch.zeros(len(self.members), 0, self.dim)
        return self.unnormalize(z.mean(0)).numpy(), z.numpy()


class LabeledFrames(torch.utils.data.Dataset):
    """images (N, K, H, W, 3) uint8, semantics (N, D) -> items with Poisson(1) bootstrap weights (M,)."""

    def __init__(self, images: np.ndarray, semantics: np.ndarray, members: int, seed: int, bootstrap: bool):
        if len(images) == 0 or len(images) != len(semantics):
            raise DataError(f"A mapper needs labelled frames, got {len(images)} images for {len(semantics)} labels; annotate some frames first.")
        self.images = torch.as_tensor(np.ascontiguousarray(images))
        self.semantics = torch.as_tensor(np.asarray(semantics, dtype=np.float32))
        rng = np.random.default_rng(seed)
        w = rng.poisson(1.0, size=(len(images), members)) if bootstrap else np.ones((len(images), members))
        self.weights = torch.as_tensor(w, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "semantics": self.semantics[i], "weights": self.weights[i]}


def build_mapper(mapper_cfg: Any, image_shape: Sequence[int], low: Sequence[float], high: Sequence[float],
                 names: Sequence[str] | None = None) -> MapperEnsemble:
    """mapper_cfg: the ``semantics.mapper`` config (members, n_frames, encoder, ...); low, high (D,): the bounds of
    the predicted coordinates; names (D,): which ones they are (None: every coordinate of the task)."""
    cfg = OmegaConf.to_container(OmegaConf.create(mapper_cfg), resolve=True)
    cfg = {k: v for k, v in cfg.items() if k not in ("bootstrap",)}
    if names is not None and len(names) != len(low):
        raise ConfigError(f"The mapper got {len(names)} semantics names {list(names)} for {len(low)} bounds; pass one name per predicted coordinate.")
    model = MapperEnsemble(image_shape=image_shape, semantics_low=low, semantics_high=high, **cfg)
    model.semantics_names = None if names is None else tuple(str(n) for n in names)
    # What load_mapper needs to rebuild the model: written as the checkpoint's config.yaml.
    model.build_config = {"mapper": cfg, "image_shape": [int(x) for x in image_shape],
                          "semantics_low": [float(x) for x in low], "semantics_high": [float(x) for x in high]}
    if names is not None:
        model.build_config["semantics_names"] = list(model.semantics_names)
    return model


def load_mapper(run_dir: str | Path, checkpoint: str = "last", device: str = "cpu") -> MapperEnsemble:
    """Rebuild a mapper from ``run_dir/checkpoints`` (config.yaml + model.safetensors; no pickle)."""
    from robopolicy.training import find_checkpoint, load_weights

    from robopolicy.utils.legacy import fill_legacy_settings
    from robopolicy.utils.safe_instantiate import checked_config

    folder = find_checkpoint(run_dir, checkpoint)
    # The encoder is built from mapper.encoder._target_: checked against the allowlist first.
    # A mapper saved by an earlier version may lack encoder settings: filled from conf/legacy/ first.
    c = checked_config(fill_legacy_settings(OmegaConf.load(folder / "config.yaml")), source=f"{str(folder / 'config.yaml')!r}")
    if "mapper" not in c:
        raise ConfigError(f"{str(folder)!r} is not a mapper checkpoint (its config has no mapper section); point mapper_dir at a mapper run.")
    names = c.get("semantics_names")  # absent in mappers saved before proprio_semantics: they predict everything
    model = build_mapper(c.mapper, c.image_shape, c.semantics_low, c.semantics_high, None if names is None else list(names))
    load_weights(model, folder / "model.safetensors", what="mapper")
    return model.to(device).eval()


def train_mapper(model: MapperEnsemble, images: np.ndarray, semantics: np.ndarray, trainer_cfg: Any, run_dir: str | Path,
                 seed: int, bootstrap: bool) -> MapperEnsemble:
    """Fit ``model`` on labelled frames with the Trainer; returns the weights to use (EMA if on).

    ``bootstrap``: conf/semantics.yaml's mapper.bootstrap (Poisson(1) weights per member, else all ones)."""
    data = LabeledFrames(images, semantics, len(model.members), seed=seed, bootstrap=bootstrap)
    cfg = OmegaConf.merge(OmegaConf.create(trainer_cfg), {"seed": int(seed)})
    extra = {"config": getattr(model, "build_config", None)} if getattr(model, "build_config", None) else None
    trainer = Trainer(model, data, cfg, run_dir, checkpoint_extra=extra)
    trainer.fit()
    return trainer.eval_model().eval()
