"""``task=dataset``: train on an episode store with no simulator; the spec comes from the store.

    robopolicy-train task=dataset dataset=data/mine.zarr policy=diffusion run_dir=runs/mine
    robopolicy-train task=dataset task.simulator=planar_push dataset=...   (rollouts in a simulator you name)

The store's ``env_spec`` (observation keys, shapes, dtypes, action size and bounds, control rate)
is the task's spec. Without ``simulator`` there is nothing to roll out in: training, validation
loss, checkpoints, W&B and ``robopolicy.load`` work as usual and rollouts are skipped with one
line. ``simulator`` names a task of ``tasks/`` (or is a task config with ``_target_``) whose
spec must match the store's; its environments then serve the rollouts.

:func:`resolve_task` also picks this task by itself when the command line names no ``task=`` and
the store records no simulator task of ``tasks/`` (imports record ``task: dataset``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from robopolicy.envs.base import Expert, Task, make_task
from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import TaskError


def _simulator_task(simulator: str | Mapping[str, Any]) -> Task:
    from omegaconf import OmegaConf

    if isinstance(simulator, str):
        from robopolicy.cli._hydra import CONF_DIR

        path = CONF_DIR / "task" / f"{simulator}.yaml"
        names = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml") if p.stem != "dataset")
        if simulator == "dataset" or not path.is_file():
            raise TaskError(f"Unknown simulator task {simulator!r}; set task.simulator to one of {', '.join(names)}.")
        simulator = OmegaConf.load(path)
    return make_task(simulator)


class DatasetTask(Task):
    """A task whose spec is an episode store's; environments only through ``simulator``."""

    def __init__(self, dataset: str, *, simulator: str | Mapping[str, Any] | None, name: str):
        from robopolicy.data.store import EpisodeStore

        if dataset in (None, "", "???"):  # commands without a dataset= key (e.g. collect) give None
            raise TaskError("task=dataset takes its spec from the store; add dataset=<store path> to the command.")
        self.dataset = str(dataset)
        self.name = name
        self._spec = EpisodeStore.open(self.dataset).spec
        self._sim = _simulator_task(simulator) if simulator else None
        if self._sim is not None:
            self._spec.check_compatible(self._sim.spec, what=f"store {self.dataset}")

    @property
    def spec(self) -> EnvSpec:
        return self._spec

    @property
    def has_simulator(self) -> bool:
        return self._sim is not None

    def make_env(self, render: bool | None = None):
        if self._sim is None:
            raise TaskError(f"The task is the dataset {self.dataset}, which has no simulator to roll out in; "
                            "name one with task.simulator=<task name> or skip rollouts.")
        return self._sim.make_env(render=render)

    def make_expert(self, rng: np.random.Generator) -> Expert:
        if self._sim is None:
            raise TaskError(f"The task is the dataset {self.dataset}, which has no scripted expert; collect with a simulator task instead.")
        return self._sim.make_expert(rng)


def can_roll_out(task: Task) -> bool:
    """False (after printing one line saying so) for a dataset task without a simulator."""
    if isinstance(task, DatasetTask) and not task.has_simulator:
        print(f"rollouts skipped: task=dataset ({task.dataset}) has no simulator; name one with task.simulator=<task> to evaluate during training.")
        return False
    return True


def task_chosen_on_command_line() -> bool:
    """Whether the running Hydra command has a ``task=`` override (True outside Hydra: the config is explicit)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return True
    return any(o.lstrip("+~").startswith("task=") for o in HydraConfig.get().overrides.task)


def known_task_names() -> set[str]:
    """The simulator tasks of ``tasks/``: file names and their ``name`` entries (``dataset`` excluded)."""
    import yaml

    from robopolicy.cli._hydra import CONF_DIR

    names = set()
    for path in (CONF_DIR / "task").glob("*.yaml"):
        names.add(path.stem)
        entry = (yaml.safe_load(path.read_text()) or {}).get("name")
        if entry:
            names.add(str(entry))
    return names - {"dataset"}


def store_names_a_simulator(store) -> bool:
    """Whether the store's provenance records a simulator task of ``tasks/`` (collect does; imports and recordings do not)."""
    return str(store.attrs.get("task", "")) in known_task_names()


def resolve_task(cfg: Any, dataset: str | Path, store=None) -> Task:
    """The task for training on ``dataset``.

    ``cfg.task`` when it is ``task=dataset`` or was chosen on the command line, or when the store
    records a simulator task; otherwise (an imported or recorded store, no ``task=``) a
    :class:`DatasetTask`, and ``cfg.task`` is replaced by its config (keeping the horizons) so the
    checkpoint records it.
    """
    from omegaconf import OmegaConf

    target = str(cfg.task.get("_target_", ""))
    if target.endswith("DatasetTask") or store is None or task_chosen_on_command_line() or store_names_a_simulator(store):
        return make_task(cfg.task)
    recorded = store.attrs.get("task")
    why = (f"was imported from {store.attrs.get('source', 'another format')} and names no simulator" if recorded == "dataset" else
           f"records the task {recorded!r}, which is not one of tasks/" if recorded else "records no simulator task")
    print(f"{dataset} {why}: training with task=dataset (spec from the store); pass task=<name> to use a simulator.")
    keep = {k: cfg.task[k] for k in ("obs_horizon", "action_horizon", "exec_horizon") if k in cfg.task}
    cfg.task = OmegaConf.create({"_target_": f"{__name__}.DatasetTask", "name": "dataset", "dataset": str(dataset), "simulator": None,
                                 "meta_keys": ["obs_horizon", "action_horizon", "exec_horizon", "eval", "demo"],
                                 **keep, "eval": {"episodes": 0, "num_envs": 1}, "demo": {}})
    return make_task(cfg.task)
