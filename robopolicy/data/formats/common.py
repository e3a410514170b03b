"""What every dataset reader hands the importer, and the rules shared by the readers.

A reader turns a folder into a :class:`Source`: the :class:`EnvSpec` the store will carry, the
number of episodes, a provenance dict, the set of things it had to derive (said in the summary),
and a function that yields episode dicts in store keys (``obs keys (T, ...)``, ``action (T, A)``,
``reward (T,)``, ``success (T,)``, ``done (T,)`` and any extra keys).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from robopolicy.envs.spec import EnvSpec
from robopolicy.errors import DataError


@dataclass
class Source:
    format: str
    path: str
    spec: EnvSpec
    n_episodes: int
    n_steps: int
    fps: float
    episodes: Callable[[], Iterator[dict[str, np.ndarray]]]
    provenance: dict = field(default_factory=dict)
    notes: set[str] = field(default_factory=set)  # what had to be derived; filled while the episodes are read


def derive_step_flags(episode: dict[str, np.ndarray], T: int, success_rule: str, notes: set[str], what: str) -> None:
    """Fill in ``reward``, ``success`` and ``done`` when the source has none (in place).

    success_rule: ``last_step`` (a recorded demonstration succeeds at its final step) or ``never``.
    reward defaults to the success flag as 0/1; done marks the last step. Each derivation is added
    to ``notes`` once, so the import summary says what was not in the data.
    """
    if success_rule not in ("last_step", "never"):
        raise DataError(f"Unknown success rule {success_rule!r}; use derive_success=last_step or derive_success=never.")
    last = np.arange(T) == T - 1
    if "success" not in episode:
        episode["success"] = last.copy() if success_rule == "last_step" else np.zeros(T, bool)
        notes.add(f"{what} has no success flag: success = " + ("true at each episode's last step" if success_rule == "last_step" else "false"))
    if "reward" not in episode:
        episode["reward"] = episode["success"].astype(np.float32)
        notes.add(f"{what} has no reward: reward = success as 0/1")
    if "done" not in episode:
        episode["done"] = last
        notes.add(f"{what} has no done flag: done = true at each episode's last step")


def action_bounds(actions: np.ndarray, given: Mapping | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(low, high) for the spec: recorded bounds when the source has them, else the data's range."""
    if given and given.get("action_low") is not None and given.get("action_high") is not None:
        return tuple(float(x) for x in given["action_low"]), tuple(float(x) for x in given["action_high"])
    return tuple(float(x) for x in actions.min(0)), tuple(float(x) for x in actions.max(0))


def as_images(name: str, a: np.ndarray, where: str) -> np.ndarray:
    """A camera array ``(T, H, W, 3)`` as uint8; float arrays must hold whole numbers in [0, 255]."""
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating) and np.all((a >= 0) & (a <= 255) & (a == np.round(a))):
        return a.astype(np.uint8)
    raise DataError(f"Camera {name!r} in {where} has dtype {a.dtype} with values outside whole numbers 0-255; "
                    f"convert it to uint8 or drop it with drop=[{name}].")
