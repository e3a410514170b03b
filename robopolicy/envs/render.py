"""Fast off-screen camera rendering for MuJoCo scenes (Meta-World and our own MJCF tasks).

Software EGL (Mesa llvmpipe) renders Meta-World at 12-14 fps with MuJoCo's defaults and about
ten times faster with the shadow map, multisampling, reflections and skybox switched off
(measured here). :class:`CameraRenderer` wraps ``mujoco.Renderer`` with those settings.

``MUJOCO_GL`` must be chosen before ``mujoco`` is first imported, so this module sets it to
``egl`` when the user has not chosen one; import it before anything that imports mujoco.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from robopolicy.errors import TaskError  # noqa: E402

_FLAGS_OFF = (
    mujoco.mjtRndFlag.mjRND_SHADOW,
    mujoco.mjtRndFlag.mjRND_REFLECTION,
    mujoco.mjtRndFlag.mjRND_SKYBOX,
)


def _load_triton_before_gl() -> None:
    """Import triton (if installed) before the first GL context is made.

    Mesa's software EGL (llvmpipe) and triton each carry their own LLVM; importing triton *after*
    an EGL context exists crashes the process with a segfault (measured here with torch 2.14.1's
    triton 3.8). diffusers and the trainer import triton through ``torch._dynamo``, so we load it
    first whenever a renderer is about to be created. The other order is safe.
    """
    try:
        import triton  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed (CPU wheels) or unusable: nothing can clash then
        pass


class CameraRenderer:
    """Renders one named camera of ``model`` to uint8 images ``(height, width, 3)``.

    ``rotate_180`` turns the picture half a turn (Meta-World's corner cameras are mounted upside
    down). The renderer owns a GL context: call :meth:`close` when done.
    """

    def __init__(self, model: mujoco.MjModel, height: int, width: int, camera: str, rotate_180: bool = False):
        if int(height) <= 0 or int(width) <= 0:
            raise TaskError(f"Image size {height}x{width} is not positive; set task.image.size to e.g. 96.")
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            names = [model.camera(i).name for i in range(model.ncam)]
            raise TaskError(f"Camera {camera!r} is not in the scene; set task.image.camera to one of {names}.")
        # The off-screen buffer must hold the image; multisampling off is a big software-GL saving
        # and must be set before the context is made.
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), int(width))
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), int(height))
        model.vis.quality.offsamples = 0
        _load_triton_before_gl()
        try:
            self._renderer = mujoco.Renderer(model, int(height), int(width))
        except Exception as e:  # noqa: BLE001 - no usable GL backend: say which variable to set
            raise TaskError(
                f"Could not open an off-screen OpenGL context ({type(e).__name__}: {e}); "
                "set MUJOCO_GL=egl (or osmesa) before starting Python, or turn camera images off."
            ) from None
        for flag in _FLAGS_OFF:
            self._renderer.scene.flags[flag] = 0
        self.camera = camera
        self.rotate_180 = bool(rotate_180)

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """The current picture of ``data``: uint8 ``(H, W, 3)``, C-contiguous."""
        self._renderer.update_scene(data, camera=self.camera)
        img = self._renderer.render()
        if self.rotate_180:
            img = img[::-1, ::-1]
        return np.ascontiguousarray(img)

    def close(self) -> None:
        renderer, self._renderer = getattr(self, "_renderer", None), None
        if renderer is not None:
            renderer.close()


class CameraEnvMixin:
    """``render()`` and ``close()`` for environments holding a camera rig (``self._rig``).

    The rig is a :class:`robopolicy.envs.observations.CameraRig` (or None); ``render()`` returns
    its first camera's picture of :meth:`_render_data` (``self.data`` unless overridden).
    """

    _rig = None

    def _render_data(self) -> mujoco.MjData:
        return self.data

    def render(self):
        return None if not self._rig else self._rig.render_first(self._render_data())

    def close(self):
        if self._rig is not None:
            self._rig.close()
            self._rig = None
