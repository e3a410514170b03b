"""The episode protocol every caller shares: seeds, the end-of-episode rule, the per-episode record,
and one single-environment step loop.

- **Seeds** (:func:`episode_seed`, :func:`episode_seeds`): episode ``i`` of replicate ``seed`` resets
  its environment with ``seed * SEED_BLOCK + i``, and the episode's own random generators
  (:func:`episode_generators`) are seeded by that number alone, so an episode depends only on
  ``(seed, i)``. Collection, evaluation, the semantics data and transfer evaluation and the runner
  all use it; replicates are disjoint blocks.
- **End rule** (:func:`end_codes`, one function for one environment or a batch): an episode ends
  ``stop_after_success`` steps after its first success (``None``: success never ends it), on
  termination, on truncation, or after ``max_steps`` steps (``None``: the environment's own limit),
  in that order of precedence for the reason reported.
- **Record** (:class:`EpisodeRecord`): ``seed, success, steps, reward, done_reason, mode``, the
  same shape from collect, evaluation, semantics and the runner (``to_dict()`` for JSON).
- **Loop** (:func:`run_episode`): resets one environment with the episode seed, asks an *actor*
  (a scripted expert, a policy controller, a mapper feeding a controller) for each action and
  calls the caller's *hooks*, which record what that caller needs (store frames, images and true
  semantics, errors against the truth). The vectorised evaluation
  (:mod:`robopolicy.evaluation.rollout`) runs many environments in one loop of its own but takes
  its seeds, end rule and record from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from robopolicy.errors import ConfigError, TaskError

SEED_BLOCK = 10_000  # episodes per seed replicate: seeds s and s+1 never share an episode
_MAX_SEED = 2**32 // SEED_BLOCK - 2  # the last block whose seeds all fit numpy's 32-bit seed range

# Why an episode ended, indexed by the end rule's code (0: it goes on). Codes 1-4 come from the end
# rule, lower codes taking precedence; the runner adds "robot" (the robot ended the episode without
# success: its own termination or step limit), "duration", "e-stop" and "watchdog" (the run
# stopped during the episode).
END_REASONS = ("", "success", "terminated", "truncated", "max_steps")


def episode_seed(seed: int, i: int) -> int:
    """Environment seed of episode ``i`` of replicate ``seed``: ``seed * SEED_BLOCK + i``.

    Block 0 is where collection starts; training's periodic evaluations use block 1 and its final
    score block 2. A plain ``seed + i`` would make seed=1 replay seed=0 shifted by one.
    """
    seed, i = int(seed), int(i)
    if not 0 <= seed <= _MAX_SEED:
        raise ConfigError(f"seed={seed} must be between 0 and {_MAX_SEED} (episode i resets with seed * {SEED_BLOCK} + i); pass a seed in that range.")
    if not 0 <= i < SEED_BLOCK:
        raise ConfigError(f"Episode {i} is past the {SEED_BLOCK} episodes of one seed block; use several seeds for more.")
    return seed * SEED_BLOCK + i


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """Environment seeds of ``episodes`` episodes of replicate ``seed`` (see :func:`episode_seed`)."""
    if not 1 <= int(episodes) <= SEED_BLOCK:
        raise ConfigError(f"episodes={episodes} must be between 1 and {SEED_BLOCK} per seed; use several seeds for more.")
    first = episode_seed(seed, 0)
    return [first + i for i in range(int(episodes))]


def episode_generators(episode_seed_: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators (expert, action noise, failures, ...) seeded by one episode seed."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(episode_seed_)).spawn(int(n))]


def end_codes(steps, success_steps, terminated, truncated, stop_after_success: int | None = 0,
              max_steps: int | None = None) -> np.ndarray:
    """The end rule for one environment or a batch.

    steps: () or (B,) steps taken; success_steps: steps since the first success, that one included
    (0 before it); terminated, truncated: the flags of the latest step.
    Returns int8 codes of the same shape: ``END_REASONS[code]`` is why the episode ends now, code 0
    where it goes on. Integer codes and a fast path for "nothing ends" because the vectorised
    evaluation calls it on every batched step.
    """
    terminated, truncated = np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
    after_success = None if stop_after_success is None else np.asarray(success_steps) > int(stop_after_success)
    at_limit = None if max_steps is None else np.asarray(steps) >= int(max_steps)
    ended = terminated | truncated
    for cond in (after_success, at_limit):
        if cond is not None:
            ended = ended | cond
    code = np.zeros(ended.shape, dtype=np.int8)
    if not ended.any():  # the common step: nothing more to work out
        return code
    for value, cond in ((4, at_limit), (3, truncated), (2, terminated), (1, after_success)):  # lowest code wins
        if cond is not None:
            code[cond] = value
    return code


def info_mode(value: Any) -> str | None:
    """``info["mode"]`` as a name, or None while the environment reports none (None, "", "none")."""
    if value is None or str(value) in ("", "none", "None"):
        return None
    return str(value)


NO_SUCCESS_FLAG = "The task's environment does not report info['success']; every task must set it at each step."


def info_success(info: Mapping[str, Any]) -> bool:
    """``info["success"]``; every task must report it at each step (else a TaskError)."""
    if "success" not in info:
        raise TaskError(NO_SUCCESS_FLAG)
    return bool(info["success"])


@dataclass(frozen=True)
class EpisodeRecord:
    """One episode: its environment seed, whether it succeeded at any step, env steps taken, summed
    reward, why it ended (one of END_REASONS, or a runner reason) and the last mode the environment reported (or None)."""

    seed: int
    success: bool
    steps: int
    reward: float
    done_reason: str
    mode: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Actor(Protocol):
    """What acts in :func:`run_episode`: reset once per episode with its seed, then one action per step."""

    def reset(self, seed: int) -> None: ...

    def act(self, obs: Mapping[str, np.ndarray], env: Any, t: int) -> np.ndarray:
        """obs: the current observation (the reset one at t=0) -> action (A,)."""


class EpisodeHooks:
    """What a caller records from :func:`run_episode`; each method is a no-op here."""

    def on_reset(self, env: Any, obs: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> None:
        """After the reset and the actor's reset."""

    def before_step(self, env: Any, t: int, obs: Mapping[str, np.ndarray], action: np.ndarray) -> None:
        """Step ``t``'s observation and action, before the environment executes it."""

    def after_step(self, env: Any, t: int, obs: Mapping[str, np.ndarray], reward: float, info: Mapping[str, Any]) -> None:
        """The observation, reward and info after step ``t``."""


class ExpertActor:
    """A task's scripted expert as an actor, optionally with clipped Gaussian action noise.

    The executed action is ``clip(expert.act(obs, env) + N(0, noise), low, high)``; with
    ``noise=0`` no random number is drawn and ``low``/``high`` None leave it unclipped.
    """

    def __init__(self, expert: Any, noise: float = 0.0, rng: np.random.Generator | None = None, low=None, high=None):
        if noise > 0 and rng is None:
            raise ConfigError("ExpertActor with noise > 0 needs an rng; pass one of episode_generators(seed, n).")
        self.expert, self.noise, self.rng = expert, float(noise), rng
        self.low = None if low is None else np.asarray(low, np.float32)
        self.high = None if high is None else np.asarray(high, np.float32)

    def reset(self, seed: int) -> None:
        self.expert.reset()

    def act(self, obs, env, t: int) -> np.ndarray:
        a = np.asarray(self.expert.act(obs, env), np.float32)
        if self.noise > 0:
            a = a + self.rng.normal(0.0, self.noise, a.shape).astype(np.float32)
        if self.low is not None:
            a = np.clip(a, self.low, self.high)
        return a


def run_episode(env: Any, actor: Actor, seed: int, stop_after_success: int | None = 0, max_steps: int | None = None,
                hooks: Sequence[EpisodeHooks] = ()) -> EpisodeRecord:
    """Run one episode of ``actor`` in the gymnasium environment ``env`` reset with ``seed``.

    The episode ends by :func:`end_codes` (``stop_after_success``: steps recorded after the first
    success, 0 = end on it, None = success does not end it; ``max_steps``: None = the
    environment's own limit). ``hooks`` are called in order at the reset and around every step.
    """
    obs, info = env.reset(seed=int(seed))
    actor.reset(int(seed))
    for h in hooks:
        h.on_reset(env, obs, info)
    steps, reward, success_steps, mode = 0, 0.0, 0, None
    while True:
        action = actor.act(obs, env, steps)
        for h in hooks:
            h.before_step(env, steps, obs, action)
        obs, r, terminated, truncated, info = env.step(action)
        reward += float(r)
        if info_success(info) or success_steps:
            success_steps += 1
        mode = info_mode(info.get("mode")) or mode
        for h in hooks:
            h.after_step(env, steps, obs, r, info)
        steps += 1
        code = int(end_codes(steps, success_steps, terminated, truncated, stop_after_success, max_steps))
        if code:
            return EpisodeRecord(int(seed), success_steps > 0, steps, reward, END_REASONS[code], mode)
