"""Checks that a store fits the task a training command was given, beyond shapes.

Meta-World tasks share one observation/action layout (39-d state, 4-d action), so a reach-v3 store
passes every shape check of push-v3. The store records the task it was collected on (its spec's
``name``, and ``provenance["env"]`` written by ``robopolicy-collect``); training a policy or a critic
on another task is refused unless the user says so (``allow_task_mismatch=true``).
"""

from __future__ import annotations

import warnings

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import DataError


def recorded_task(store) -> str:
    """The task name a store records ("" when it records none): provenance ``env``, else its spec's name."""
    env = (store.attrs or {}).get("env")
    return str(env) if env else str(store.spec.name or "")


def check_store_task(store, task_spec: EnvSpec, dataset: str, allow_mismatch: bool, command: str = "robopolicy-train") -> None:
    """DataError when the store was collected on another task than ``task_spec.name``.

    ``allow_mismatch``: warn instead (e.g. pretraining on a related task on purpose). A store or task
    without a name cannot be compared and passes.
    """
    stored, given = recorded_task(store), str(task_spec.name or "")
    if not stored or not given or stored == given:
        return
    if allow_mismatch:
        warnings.warn(f"Training on {dataset} (collected on {stored!r}) for task {given!r} because allow_task_mismatch=true.",
                      UserWarning, stacklevel=2)
        return
    raise DataError(f"The dataset {dataset} was collected on task {stored!r} but {command} was given task {given!r}; "
                    f"pass the task the data came from ({stored!r}), or add allow_task_mismatch=true to train on it anyway.")
