"""Tasks: gymnasium environments with dict observations, a success flag and scripted experts."""

from robopolicy.envs.base import Expert, Task, make_task
from robopolicy.envs.spec import EnvSpec, ObsKeySpec

__all__ = ["EnvSpec", "Expert", "ObsKeySpec", "Task", "make_task"]
