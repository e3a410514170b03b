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

With ``mapper.proprio_input`` the head also gets the robot's own reading (``agent_pos``: the end-effector
position and gripper), normalised by the task's bounds of those coordinates and concatenated to the image
features. An object under the fingers is then read from where the hand is, not from the few pixels left
visible. Such a mapper needs the reading wherever it predicts (``needs_reading``).

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
                 color_jitter: float, reading_low: Sequence[float] | None, reading_high: Sequence[float] | None):
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
        # The robot's reading as a second input (None: images only), normalised to [-1, 1] by these bounds.
        self.reading_dim = 0 if reading_low is None else len(reading_low)
        if self.reading_dim:
            self.register_buffer("reading_low", torch.tensor(reading_low, dtype=torch.float32))
            self.register_buffer("reading_high", torch.tensor(reading_high, dtype=torch.float32))
        self.members = nn.ModuleList()
        for _ in range(int(members)):
            enc = instantiate(enc_cfg, image_shape=(h, w, c * self.n_frames))
            head = nn.Sequential(nn.Linear(enc.out_dim + self.reading_dim, hidden_dim), nn.Mish(), nn.Linear(hidden_dim, self.dim))
            self.members.append(nn.Sequential(enc, head))

    @property
    def needs_reading(self) -> bool:
        """True when the head takes the robot's reading too (``mapper.proprio_input``)."""
        return self.reading_dim > 0

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

    def _reading(self, reading: torch.Tensor | np.ndarray | None, batch: int) -> torch.Tensor | None:
        """reading (B, P) -> normalised float on the model's device; None for an image-only mapper (any reading ignored)."""
        if not self.reading_dim:
            return None
        if reading is None:
            raise DataError("This mapper was trained with mapper.proprio_input=true and needs the robot's reading (agent_pos) "
                            "with every image; pass it (RealEpisodes.reading, obs['agent_pos']).")
        r = torch.as_tensor(reading, dtype=torch.float32).to(self.low.device)
        if r.shape != (batch, self.reading_dim):
            raise DataError(f"The mapper expects the robot's reading as ({batch}, {self.reading_dim}), got {tuple(r.shape)}.")
        return 2 * (r - self.reading_low) / (self.reading_high - self.reading_low) - 1

    def forward(self, images: torch.Tensor, reading: torch.Tensor | None = None) -> torch.Tensor:
        """images (B, K, H, W, 3) uint8, reading (B, P) the robot's (needed when ``needs_reading``) -> (M, B, D)."""
        x = self._prep(images)
        r = self._reading(reading, x.shape[0])
        if r is None:
            return torch.stack([m(x) for m in self.members])
        return torch.stack([head(torch.cat([enc(x), r], dim=1)) for enc, head in self.members])

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """batch: image (B, K, H, W, 3) uint8, semantics (B, D) metres, weights (B, M) bootstrap weights, and
        reading (B, P) for a mapper that takes the robot's reading."""
        pred = self(batch["image"], batch.get("reading"))                  # (M, B, D)
        target = self.normalize(batch["semantics"].float())[None]         # (1, B, D)
        w = batch["weights"].float().T                                     # (M, B)
        mse = ((pred - target) ** 2).mean(-1)                              # (M, B)
        loss = ((w * mse).sum(1) / w.sum(1).clamp_min(1.0)).sum()
        return loss, {"mse": float(mse.mean().detach())}

    @torch.no_grad()
    def predict(self, images: np.ndarray | torch.Tensor, reading: np.ndarray | None = None,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """images (N, K, H, W, 3) uint8, reading (N, P) the robot's at those frames (used when ``needs_reading``)
        -> mean (N, D) metres, member predictions (M, N, D) normalised."""
        was = self.training
        self.eval()
        outs = []
        for i in range(0, len(images), batch_size):
            r = None if reading is None or not self.reading_dim else reading[i : i + batch_size]
            outs.append(self(torch.as_tensor(np.asarray(images[i : i + batch_size])), r).cpu())
        self.train(was)
        z = torch.cat(outs, dim=1) if outs else torch.zeros(len(self.members), 0, self.dim)
        return self.unnormalize(z.mean(0)).numpy(), z.numpy()


class LabeledFrames(torch.utils.data.Dataset):
    """images (N, K, H, W, 3) uint8, semantics (N, D), reading (N, P) or None -> items with Poisson(1) bootstrap weights (M,)."""

    def __init__(self, images: np.ndarray, semantics: np.ndarray, members: int, seed: int, bootstrap: bool,
                 reading: np.ndarray | None = None):
        if len(images) == 0 or len(images) != len(semantics):
            raise DataError(f"A mapper needs labelled frames, got {len(images)} images for {len(semantics)} labels; annotate some frames first.")
        self.images = torch.as_tensor(np.ascontiguousarray(images))
        self.semantics = torch.as_tensor(np.asarray(semantics, dtype=np.float32))
        rng = np.random.default_rng(seed)
        w = rng.poisson(1.0, size=(len(images), members)) if bootstrap else np.ones((len(images), members))
        self.weights = torch.as_tensor(w, dtype=torch.float32)
        if reading is not None and len(reading) != len(images):
            raise DataError(f"{len(images)} labelled images came with {len(reading)} robot readings; pass one reading per image.")
        self.reading = None if reading is None else torch.as_tensor(np.asarray(reading, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"image": self.images[i], "semantics": self.semantics[i], "weights": self.weights[i]}
        if self.reading is not None:
            item["reading"] = self.reading[i]
        return item


def build_mapper(mapper_cfg: Any, image_shape: Sequence[int], low: Sequence[float], high: Sequence[float],
                 names: Sequence[str] | None = None,
                 reading_bounds: tuple[Sequence[float], Sequence[float]] | None = None) -> MapperEnsemble:
    """mapper_cfg: the ``semantics.mapper`` config (members, n_frames, encoder, proprio_input, ...); low, high (D,): the
    bounds of the predicted coordinates; names (D,): which ones they are (None: every coordinate of the task);
    reading_bounds: (low, high) of the robot's reading, needed when ``proprio_input`` is true
    (:meth:`~robopolicy.semantics.proprio.SemanticsSplit.reading_bounds`)."""
    cfg = OmegaConf.to_container(OmegaConf.create(mapper_cfg), resolve=True)
    # proprio_input is absent in mappers saved before it existed: they take images only.
    proprio_input = bool(cfg.pop("proprio_input", False))
    cfg = {k: v for k, v in cfg.items() if k not in ("bootstrap",)}
    if names is not None and len(names) != len(low):
        raise ConfigError(f"The mapper got {len(names)} semantics names {list(names)} for {len(low)} bounds; pass one name per predicted coordinate.")
    if proprio_input and reading_bounds is None:
        raise ConfigError("mapper.proprio_input=true needs the bounds of the robot's reading; build it through the "
                          "semantics loop (it takes them from the task), or set mapper.proprio_input=false.")
    rl, rh = ([float(x) for x in b] for b in reading_bounds) if proprio_input else (None, None)
    model = MapperEnsemble(image_shape=image_shape, semantics_low=low, semantics_high=high, reading_low=rl, reading_high=rh, **cfg)
    model.semantics_names = None if names is None else tuple(str(n) for n in names)
    # What load_mapper needs to rebuild the model: written as the checkpoint's config.yaml.
    model.build_config = {"mapper": {**cfg, "proprio_input": proprio_input}, "image_shape": [int(x) for x in image_shape],
                          "semantics_low": [float(x) for x in low], "semantics_high": [float(x) for x in high]}
    if proprio_input:
        model.build_config["reading_low"], model.build_config["reading_high"] = rl, rh
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
    reading = (list(c.reading_low), list(c.reading_high)) if "reading_low" in c else None
    model = build_mapper(c.mapper, c.image_shape, c.semantics_low, c.semantics_high, None if names is None else list(names), reading)
    load_weights(model, folder / "model.safetensors", what="mapper")
    return model.to(device).eval()


def train_mapper(model: MapperEnsemble, images: np.ndarray, semantics: np.ndarray, trainer_cfg: Any, run_dir: str | Path,
                 seed: int, bootstrap: bool, reading: np.ndarray | None = None) -> MapperEnsemble:
    """Fit ``model`` on labelled frames with the Trainer; returns the weights to use (EMA if on).

    ``bootstrap``: conf/semantics.yaml's mapper.bootstrap (Poisson(1) weights per member, else all ones).
    ``reading`` (N, P): the robot's reading at each frame, for a mapper that takes it (ignored otherwise)."""
    if model.needs_reading and reading is None:
        raise DataError("mapper.proprio_input=true needs the robot's reading at every labelled frame; pass reading= "
                        "(RealEpisodes.reading), or set mapper.proprio_input=false.")
    data = LabeledFrames(images, semantics, len(model.members), seed=seed, bootstrap=bootstrap,
                         reading=reading if model.needs_reading else None)
    cfg = OmegaConf.merge(OmegaConf.create(trainer_cfg), {"seed": int(seed)})
    extra = {"config": getattr(model, "build_config", None)} if getattr(model, "build_config", None) else None
    trainer = Trainer(model, data, cfg, run_dir, checkpoint_extra=extra)
    trainer.fit()
    return trainer.eval_model().eval()
