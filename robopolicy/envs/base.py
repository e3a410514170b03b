"""Task and scripted-expert interfaces, and ``make_task`` (Hydra instantiation of ``cfg.task``)."""

from __future__ import annotations

import abc
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import TaskError


class Expert(abc.ABC):
    """A scripted policy that makes demonstrations. ``act`` may read the environment's true state."""

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Called at every episode start."""

    @abc.abstractmethod
    def act(self, obs: Mapping[str, np.ndarray], env: gym.Env) -> np.ndarray:
        """obs: one observation dict -> action (A,) float32 in the task's action bounds."""


class Task(abc.ABC):
    """A task definition: builds environments and scripted experts and states the spec.

    Environments follow the gymnasium API with dict observations matching ``spec``;
    ``reset(seed=s)`` is fully reproducible and ``info["success"]`` is a bool at every step.
    """

    name: str = ""

    @property
    @abc.abstractmethod
    def spec(self) -> EnvSpec:
        """Observation/action spec of the environments this task makes."""

    @abc.abstractmethod
    def make_env(self, render: bool | None = None) -> gym.Env:
        """A new environment; ``render`` overrides whether camera keys are produced."""

    @abc.abstractmethod
    def make_expert(self, rng: np.random.Generator) -> Expert:
        """A scripted expert; ``rng`` drives any random choices it makes (e.g. which mode)."""


def make_task(task_cfg: Any) -> Task:
    """Instantiate ``task_cfg`` (a config with ``_target_``) into a :class:`Task`."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    if isinstance(task_cfg, Task):
        return task_cfg
    if not isinstance(task_cfg, DictConfig):
        task_cfg = OmegaConf.create(dict(task_cfg))
    if "_target_" not in task_cfg:
        raise TaskError("The task config has no _target_; pick a task with task=<name> from the tasks/ folder.")
    # Keys that describe the task but are not constructor arguments (horizons, eval protocol, ...)
    # are listed under `meta_keys` and removed before instantiation.
    meta = set(task_cfg.get("meta_keys", [])) | {"meta_keys"}
    kwargs = {k: v for k, v in task_cfg.items() if k not in meta}
    try:
        task = instantiate(OmegaConf.create(kwargs), _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, TaskError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, TaskError):
            raise cause from None
        raise TaskError(f"Could not build task {task_cfg.get('name', '?')!r}: {cause or e}; check the task.* settings.") from None
    return task
