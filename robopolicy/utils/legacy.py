"""Runs saved by earlier versions still load: the settings their config.yaml lacks are filled once, here.

A run's ``config.yaml`` records every setting its model was built with, and the classes take those
settings as required arguments (each default lives once, in ``conf/``). Runs saved before the
observation-encoder settings moved there lack some of them (a critic's ``encoder: {}``, a
SmallConvEncoder without ``padding``); their values then were the code's defaults, written down in
``conf/legacy/encoder.yaml``. :func:`fill_legacy_settings` adds a missing key from that file and
never changes a key the run has.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

from robopolicy import resources

ENCODER_SECTIONS = ("policy", "critic")  # top-level sections whose `encoder` block is an ObsEncoder's settings


@lru_cache(maxsize=1)
def legacy_encoder_settings() -> dict:
    """conf/legacy/encoder.yaml as plain data: ``obs_encoder`` and ``image_encoders`` (by ``_target_``)."""
    return OmegaConf.to_container(OmegaConf.load(resources.conf_dir() / "legacy" / "encoder.yaml"))


def _fill(node: dict, values: dict) -> None:
    for key, value in values.items():
        node.setdefault(key, copy.deepcopy(value))


def _fill_image_encoders(node: Any, table: dict) -> None:
    """Every mapping with a ``_target_`` of ``table`` (at any depth) gets its missing keys."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str) and target in table:
            _fill(node, table[target])
        for value in node.values():
            _fill_image_encoders(value, table)
    elif isinstance(node, list):
        for value in node:
            _fill_image_encoders(value, table)


def fill_legacy_settings(cfg: DictConfig) -> DictConfig:
    """A copy of a saved run's (or mapper's) config with the encoder settings it lacks filled in.

    ``policy.encoder`` / ``critic.encoder`` (when the section has the key; ``null`` counts as empty)
    get the ObsEncoder settings (and ImageAugment's, when ``augment`` is a mapping), every
    SmallConvEncoder / ImageEncoder node its own. Interpolations
    and ``???`` values are kept as they are.
    """
    legacy = legacy_encoder_settings()
    data = OmegaConf.to_container(cfg, resolve=False)
    for section in ENCODER_SECTIONS:
        node = data.get(section)
        if isinstance(node, dict) and "encoder" in node:
            if node["encoder"] is None:
                node["encoder"] = {}
            if isinstance(node["encoder"], dict):
                _fill(node["encoder"], legacy["obs_encoder"])
                if isinstance(node["encoder"]["augment"], dict):
                    _fill(node["encoder"]["augment"], legacy["augment"])
    _fill_image_encoders(data, legacy["image_encoders"])
    return OmegaConf.create(data)
