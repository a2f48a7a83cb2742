"""Headless frames from MuJoCo scenes: the OpenGL platform, and a reusable frame renderer.

Platform. MuJoCo picks its OpenGL platform from MUJOCO_GL when it is first imported, so
`select_gl_platform()` runs in `envs/__init__.py` before anything imports mujoco: a user's
MUJOCO_GL is kept; otherwise EGL when its library is installed (the default; Mesa's llvmpipe
renders on a CPU), else OSMesa. When neither library exists, building a renderer raises one
RenderError line saying what to install.

Renderer. `FrameRenderer` keeps one `dm_control.mujoco.engine.Camera` per (physics, size)
instead of building a camera per frame as `physics.render` does, and sizes the offscreen buffer
to the image. Both are faster and give the same pixels (tests/test_pixels.py compares them).
`fast=True` also turns off multisampling, shadows and reflections (about 10-20x
faster at 64x64); that changes the look, so it is an option and never the default: V-D4RL's
files were rendered with the default look, and a policy trained on other-looking frames would
not transfer to them.
"""

from __future__ import annotations

import ctypes.util
import os
from typing import Any

import numpy as np

PLATFORM_LIBRARIES = {"egl": "EGL", "osmesa": "OSMesa"}
INSTALL_HINT = (
    "install EGL (Debian: apt-get install libegl1) or OSMesa (apt-get install libosmesa6), "
    "or set MUJOCO_GL to a platform that works here"
)


class RenderError(RuntimeError):
    """Frames cannot be rendered here (no usable headless OpenGL platform); one line."""


def select_gl_platform() -> str | None:
    """Set MUJOCO_GL (unless the user did) to the first installed headless platform; returns it,
    or None when none is installed (MUJOCO_GL is then left unset)."""
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    for platform, library in PLATFORM_LIBRARIES.items():
        if ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = platform
            return platform
    return None


def _require_platform() -> None:
    if not os.environ.get("MUJOCO_GL"):
        raise RenderError(f"no headless OpenGL library found for rendering frames: {INSTALL_HINT}")


def _no_shadows_or_reflections(physics: Any, scene: Any) -> None:
    import mujoco

    scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0


class FrameRenderer:
    """uint8 [size, size, 3] frames of one dm_control physics from one camera.

    Build it before the physics renders anything else: the offscreen buffer size and the
    multisampling are fixed when MuJoCo creates the physics' GL context.
    """

    def __init__(self, physics: Any, size: int, camera_id: int = 0, fast: bool = False) -> None:
        _require_platform()
        from dm_control.mujoco import engine

        global_ = physics.model.vis.global_
        global_.offwidth, global_.offheight = max(size, 1), max(size, 1)
        if fast:
            physics.model.vis.quality.offsamples = 0
        callback = _no_shadows_or_reflections if fast else None
        try:
            self._camera = engine.Camera(
                physics, height=size, width=size, camera_id=camera_id, scene_callback=callback
            )
        except Exception as exc:  # the GL platform failed to start: say what to do, one line
            platform = os.environ.get("MUJOCO_GL")
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RenderError(
                f"rendering with MUJOCO_GL={platform} failed ({detail}); {INSTALL_HINT}"
            ) from None

    def render(self) -> np.ndarray:
        """The current frame, uint8 [size, size, 3], a new array: dm_control's Camera returns a
        view of one buffer that its next render overwrites, so frames kept from it (an
        episode's, a dataset's) would all become the last one."""
        return np.array(self._camera.render())
