"""Observation/action specification shared by tasks, stores, policies, critics and the runner.

An ``EnvSpec`` travels with every episode store (as an attribute) and every checkpoint
(``spec.json``), so a policy can refuse a task or dataset whose observations do not match.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from robopolicy.errors import CheckpointError


@dataclass(frozen=True)
class ObsKeySpec:
    """One observation key. ``kind`` is ``"lowdim"`` (float32 vector) or ``"rgb"`` (uint8 H×W×3)."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    kind: str = "lowdim"


@dataclass(frozen=True)
class EnvSpec:
    """What an environment emits and accepts.

    obs: key -> ObsKeySpec; actions are float32 vectors of ``action_dim`` in [action_low, action_high].
    """

    obs: dict[str, ObsKeySpec]
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    max_episode_steps: int
    control_hz: float = 10.0
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lowdim_keys(self) -> list[str]:
        return [k for k, v in self.obs.items() if v.kind == "lowdim"]

    @property
    def rgb_keys(self) -> list[str]:
        return [k for k, v in self.obs.items() if v.kind == "rgb"]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["obs"] = {k: {"shape": list(v.shape), "dtype": v.dtype, "kind": v.kind} for k, v in self.obs.items()}
        d["action_low"] = list(self.action_low)
        d["action_high"] = list(self.action_high)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EnvSpec":
        obs = {k: ObsKeySpec(tuple(v["shape"]), v.get("dtype", "float32"), v.get("kind", "lowdim")) for k, v in d["obs"].items()}
        return cls(
            obs=obs,
            action_dim=int(d["action_dim"]),
            action_low=tuple(float(x) for x in d["action_low"]),
            action_high=tuple(float(x) for x in d["action_high"]),
            max_episode_steps=int(d["max_episode_steps"]),
            control_hz=float(d.get("control_hz", 10.0)),
            name=str(d.get("name", "")),
            extra=dict(d.get("extra", {})),
        )

    def check_compatible(self, other: "EnvSpec", keys: list[str] | None = None, what: str = "checkpoint") -> None:
        """Raise CheckpointError unless ``other`` has the same action space and the given obs keys."""
        if other.action_dim != self.action_dim:
            raise CheckpointError(
                f"The {what} expects {self.action_dim}-dimensional actions but the task has {other.action_dim}; "
                "use the task the model was trained on."
            )
        for k in keys if keys is not None else list(self.obs):
            if k not in other.obs:
                raise CheckpointError(
                    f"The {what} needs observation key {k!r}, which the task does not provide (it has {sorted(other.obs)}); "
                    "use the task the model was trained on."
                )
            if tuple(other.obs[k].shape) != tuple(self.obs[k].shape):
                raise CheckpointError(
                    f"The {what} expects observation {k!r} of shape {tuple(self.obs[k].shape)} but the task gives "
                    f"{tuple(other.obs[k].shape)}; use the task the model was trained on."
                )
