"""Which observation keys a task emits: privileged state, proprioception, named cameras.

A robot has its own readings (proprioception: end-effector position, gripper opening) and
cameras; it never has the simulator's object and goal positions. Every task here therefore
separates three kinds of key:

- ``state``: the task's full low-dimensional state, including object/goal positions. It is
  *privileged* (listed in ``spec.extra["privileged_keys"]``) and is what the scripted experts,
  state-based baselines and critics use.
- ``agent_pos``: proprioception only, sliced from the state (float32).
- one key per camera, named after the camera (``corner2``, ``gripperPOV``, ``top``, ...),
  uint8 ``(camera_size, camera_size, 3)``.

``task.obs`` picks the set: ``state`` (privileged state only, the default and the fastest),
``visuomotor`` (``agent_pos`` + the cameras, nothing privileged) or ``all`` (every key, for
critics, debugging and mappers; an image policy still refuses ``state`` unless it is allowed by
name, see :class:`robopolicy.nets.encoders.ObsEncoder`). The legacy ``task.image`` block keeps
working: with ``image.enabled`` one more camera is emitted under the key ``image``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from robopolicy.envs import render as _render
from robopolicy.envs.spec import ObsKeySpec
from robopolicy.errors import TaskError

OBS_MODES = ("state", "visuomotor", "all")
STATE_KEY = "state"
PROPRIO_KEY = "agent_pos"
LEGACY_IMAGE_KEY = "image"


@dataclass(frozen=True)
class ObsLayout:
    """The keys one environment emits. ``cameras``: (name, size, rotate_180) per camera key."""

    state: bool
    proprio: bool
    cameras: tuple[tuple[str, str, int, bool], ...]  # (obs key, camera name, size, rotate_180)

    @property
    def camera_keys(self) -> list[str]:
        return [c[0] for c in self.cameras]


def obs_layout(mode: str, cameras: Sequence[str] | None, camera_size: int, rotate_180: Sequence[str] | None,
               image: Mapping[str, Any] | None, render: bool | None = None) -> ObsLayout:
    """Task settings -> :class:`ObsLayout`.

    mode: one of OBS_MODES. cameras: camera names (keys of the same name). rotate_180: names of
    cameras mounted upside down. image: the legacy ``{enabled, size, camera, rotate_180}`` block.
    render: None keeps the config, False drops every camera, True also turns the legacy image on.
    """
    if mode not in OBS_MODES:
        raise TaskError(f"Unknown task.obs={mode!r}; use one of {', '.join(OBS_MODES)}.")
    names = [str(c) for c in (cameras or [])]
    if len(set(names)) != len(names) or LEGACY_IMAGE_KEY in names or STATE_KEY in names or PROPRIO_KEY in names:
        raise TaskError(f"task.cameras={names} repeats a name or uses a reserved key (image, state, agent_pos); list each camera once.")
    if int(camera_size) <= 0:
        raise TaskError(f"task.camera_size={camera_size} is not positive; set it to e.g. 84.")
    if mode == "visuomotor" and not names:
        raise TaskError("task.obs=visuomotor needs at least one camera; set task.cameras, e.g. task.cameras=[corner2].")
    flip = {str(c) for c in (rotate_180 or [])}
    cams: list[tuple[str, str, int, bool]] = []
    if mode != "state" and render is not False:
        cams = [(n, n, int(camera_size), n in flip) for n in names]
    image = dict(image or {})
    if (bool(image.get("enabled", False)) and render is not False) or render is True:
        cams.append((LEGACY_IMAGE_KEY, str(image.get("camera")), int(image.get("size", camera_size)),
                     bool(image.get("rotate_180", False))))
    return ObsLayout(state=mode in ("state", "all"), proprio=mode in ("visuomotor", "all"), cameras=tuple(cams))


def obs_spec(layout: ObsLayout, state_dim: int, proprio_dim: int) -> dict[str, ObsKeySpec]:
    """The EnvSpec ``obs`` entries of ``layout``."""
    obs: dict[str, ObsKeySpec] = {}
    if layout.state:
        obs[STATE_KEY] = ObsKeySpec((int(state_dim),))
    if layout.proprio:
        obs[PROPRIO_KEY] = ObsKeySpec((int(proprio_dim),))
    for key, _cam, size, _flip in layout.cameras:
        obs[key] = ObsKeySpec((size, size, 3), "uint8", "rgb")
    return obs


def spec_extra(layout: ObsLayout) -> dict[str, Any]:
    """EnvSpec ``extra`` entries that say which keys are privileged and which are cameras."""
    return {"privileged_keys": [STATE_KEY], "obs_mode_keys": {"proprio": PROPRIO_KEY, "cameras": layout.camera_keys}}


class CameraRig:
    """Renders every camera of a layout from one MuJoCo model: ``render(data) -> {key: (H, W, 3) uint8}``."""

    def __init__(self, model, layout: ObsLayout):
        self._renderers: dict[str, _render.CameraRenderer] = {}
        try:
            for key, cam, size, flip in layout.cameras:
                self._renderers[key] = _render.CameraRenderer(model, size, size, cam, rotate_180=flip)
        except Exception:
            self.close()
            raise

    def __bool__(self) -> bool:
        return bool(self._renderers)

    def render(self, data) -> dict[str, np.ndarray]:
        return {k: r.render(data) for k, r in self._renderers.items()}

    def render_first(self, data) -> np.ndarray | None:
        """The first camera's picture (``env.render()`` and evaluation videos), or None without cameras."""
        for r in self._renderers.values():
            return r.render(data)
        return None

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers = {}


def gym_spaces(layout: ObsLayout, state_dim: int, proprio_dim: int):
    """gymnasium Dict space of ``layout``."""
    import gymnasium as gym

    spaces = {}
    for k, v in obs_spec(layout, state_dim, proprio_dim).items():
        if v.kind == "rgb":
            spaces[k] = gym.spaces.Box(0, 255, v.shape, np.uint8)
        else:
            spaces[k] = gym.spaces.Box(-np.inf, np.inf, v.shape, np.float32)
    return gym.spaces.Dict(spaces)


def assemble(layout: ObsLayout, state: np.ndarray, proprio: np.ndarray, rig: CameraRig | None, data) -> dict[str, np.ndarray]:
    """One observation dict of ``layout`` from the full state, the proprio slice and the cameras."""
    obs: dict[str, np.ndarray] = {}
    if layout.state:
        obs[STATE_KEY] = np.asarray(state, dtype=np.float32)
    if layout.proprio:
        obs[PROPRIO_KEY] = np.asarray(proprio, dtype=np.float32)
    if rig:
        obs.update(rig.render(data))
    return obs
