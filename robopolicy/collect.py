"""Demonstrations from a task's scripted expert into an episode store (``robopolicy-collect``).

Episodes follow the shared protocol (:mod:`robopolicy.evaluation.episodes`): episode ``i`` resets
the environment with the seed-block seed ``seed * SEED_BLOCK + i`` (the scheme evaluation uses),
runs in the shared step loop, and draws its expert's, noise and failure random numbers from
generators seeded by that episode seed alone (``episode_generators``), so every
episode depends only on ``(seed, i)``: ``append=True`` continues a killed collection and gives the
same store as one uninterrupted run. The executed action is the expert's action plus Gaussian
noise of std ``noise`` (per dimension, in action units), clipped to the action bounds; the store
records the executed action.

Deliberately failing episodes (``fail_fraction``): a fixed-size random subset of the episodes is
driven by a *random-walk* behaviour instead of the expert after a short expert prefix. The walk
starts from the expert's action at the switch step and moves by Gaussian increments (std
``walk_std``), clipped to the bounds, so the arm or agent wanders away smoothly rather than
jittering in place. The prefix length is uniform in ``[0, fail_prefix]`` of the episode limit, so
failed episodes begin like good ones (useful negatives for critics). Such an episode can still
succeed by chance: ``success`` in the store always records what actually happened.

Recording stops ``stop_after_success`` steps after the first success, at the environment's time
limit, or on termination (the protocol's end rule); ``done`` is true on each episode's last
recorded step. The summary lists each episode's ``EpisodeRecord`` under ``records``.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from robopolicy.envs.base import Expert, Task, make_task
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import ConfigError, DataError


class RandomWalkFailure(Expert):
    """Follows ``expert`` for ``prefix`` steps, then a clipped Gaussian random walk of actions."""

    def __init__(self, expert: Expert, rng: np.random.Generator, prefix: int, walk_std: float, low, high):
        self.expert, self.rng, self.prefix, self.walk_std = expert, rng, int(prefix), float(walk_std)
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self._t, self._a = 0, None

    def reset(self) -> None:
        self.expert.reset()
        self._t, self._a = 0, None

    def act(self, obs, env) -> np.ndarray:
        if self._t < self.prefix or self._a is None:
            a = np.asarray(self.expert.act(obs, env), np.float32)
            if self._t >= self.prefix:
                self._a = a
        else:
            a = self._a + self.rng.normal(0.0, self.walk_std, self._a.shape).astype(np.float32)
            self._a = a = np.clip(a, self.low, self.high)
        self._t += 1
        return a


def observed_spec(spec: EnvSpec, obs: Mapping[str, np.ndarray]) -> EnvSpec:
    """``spec`` with its observation keys taken from a real observation (cameras on or off)."""
    keys = {}
    for k, v in obs.items():
        v = np.asarray(v)
        rgb = v.dtype == np.uint8 and v.ndim == 3
        keys[k] = ObsKeySpec(tuple(v.shape), "uint8" if rgb else "float32", "rgb" if rgb else "lowdim")
    return dataclasses.replace(spec, obs=keys)


def versions() -> dict[str, str]:
    """Versions of the packages that shape the data."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("robopolicy", "numpy", "mujoco", "metaworld", "gymnasium", "zarr"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _check_args(episodes, noise, fail_fraction, stop_after_success, out, overwrite, append) -> Path:
    if out is None or str(out).strip() == "":
        raise ConfigError("No output store given; pass out=PATH.zarr.")
    if int(episodes) < 1:
        raise ConfigError(f"episodes={episodes} must be at least 1; pass e.g. episodes=50.")
    if float(noise) < 0:
        raise ConfigError(f"noise={noise} is negative; pass the noise standard deviation, e.g. noise=0.1.")
    if not 0.0 <= float(fail_fraction) <= 1.0:
        raise ConfigError(f"fail_fraction={fail_fraction} is outside [0, 1]; pass e.g. fail_fraction=0.2.")
    if stop_after_success is not None and int(stop_after_success) < 0:
        raise ConfigError(f"stop_after_success={stop_after_success} is negative; pass 0 or more (or null to record full episodes).")
    if overwrite and append:
        raise ConfigError("overwrite=true and append=true contradict each other; pass only one of them.")
    path = Path(out)
    if path.exists() and not overwrite and not append:
        raise DataError(f"{path} already exists; pass append=true to continue it, overwrite=true to replace it, or choose another out=PATH.")
    return path


# Provenance entries that decide the episodes: an append must match them all.
RECIPE_KEYS = ("task_config", "env", "seed", "seed_scheme", "noise", "fail_fraction", "fail_behaviour", "stop_after_success", "expert")


def _check_append(store, spec: EnvSpec, prov: Mapping[str, Any], episodes: int) -> None:
    """Refuse to continue ``store`` unless it was collected with the same spec and recipe."""
    if store.spec.to_dict() != spec.to_dict():
        raise DataError(f"{store.path} holds episodes of another observation/action spec ({store.spec.name}); append=true needs the same task settings, or choose another out=PATH.")
    old = store.attrs
    for k in RECIPE_KEYS:
        if old.get(k) != prov.get(k):
            raise DataError(f"{store.path} was collected with {k}={old.get(k)!r} but this run has {k}={prov.get(k)!r}; append=true needs the same settings, or choose another out=PATH.")
    if prov["fail_fraction"] > 0 and old.get("episodes") != episodes:
        raise DataError(f"{store.path} was collected as a run of episodes={old.get('episodes')} and failing episodes are drawn from that count; pass episodes={old.get('episodes')} to continue it.")
    if store.n_episodes > episodes:
        raise DataError(f"{store.path} already has {store.n_episodes} episodes, more than episodes={episodes}; pass at least episodes={store.n_episodes}.")


class _StoreEpisode:
    """Episode hooks that build the store's episode dict: obs[t] before action[t], then reward[t], success[t]."""

    def __init__(self):
        self.frames: dict[str, list] = {}
        self.actions, self.rewards, self.successes = [], [], []

    def on_reset(self, env, obs, info) -> None:
        self.frames = {k: [] for k in obs}

    def before_step(self, env, t, obs, action) -> None:
        for k, v in obs.items():
            self.frames[k].append(v)
        self.actions.append(action)

    def after_step(self, env, t, obs, reward, info) -> None:
        self.rewards.append(reward)
        self.successes.append(bool(info["success"]))

    def episode(self) -> dict[str, np.ndarray]:
        done = np.zeros(len(self.actions), bool)
        done[-1] = True
        episode = {k: np.stack(v) for k, v in self.frames.items()}
        episode.update(action=np.stack(self.actions).astype(np.float32), reward=np.asarray(self.rewards, np.float32),
                       success=np.asarray(self.successes, bool), done=done)
        return episode


def run_episode(env, policy: Expert, seed: int, noise: float, noise_rng: np.random.Generator,
                stop_after_success: int | None):
    """One episode of the shared protocol (:func:`robopolicy.evaluation.episodes.run_episode`) with
    the expert ``policy`` plus clipped noise; returns the episode dict (store layout) and its
    :class:`~robopolicy.evaluation.episodes.EpisodeRecord`."""
    from robopolicy.evaluation.episodes import ExpertActor
    from robopolicy.evaluation.episodes import run_episode as run_shared

    actor = ExpertActor(policy, noise, noise_rng, env.action_space.low, env.action_space.high)
    hook = _StoreEpisode()
    record = run_shared(env, actor, seed, stop_after_success=stop_after_success, hooks=[hook])
    return hook.episode(), record


def collect(
    task: Task | Mapping,
    episodes: int,
    noise: float = 0.0,
    fail_fraction: float = 0.0,
    out: str | Path | None = None,
    seed: int = 0,
    stop_after_success: int | None = 5,
    progress: bool = True,
    render: bool | None = None,
    overwrite: bool = False,
    walk_std: float = 0.3,
    fail_prefix: float = 0.3,
    provenance: Mapping[str, Any] | None = None,
    append: bool = False,
    task_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the task's expert for ``episodes`` episodes and write them to the store ``out``.

    render: None keeps the task's camera setting, True/False turns camera images on/off.
    append: continue the store at ``out`` (collected with the same settings) up to ``episodes``
    episodes. task_config: the task's settings as a plain dict, recorded and compared on append
    (default: ``task`` itself when it is a config).
    Returns the summary dict (also stored under ``provenance["summary"]``).
    """
    from tqdm.auto import tqdm

    path = _check_args(episodes, noise, fail_fraction, stop_after_success, out, overwrite, append)
    if task_config is None and isinstance(task, Mapping):
        from omegaconf import DictConfig, OmegaConf

        task_config = OmegaConf.to_container(task, resolve=True) if isinstance(task, DictConfig) else dict(task)
    task = make_task(task)
    episodes, noise, seed = int(episodes), float(noise), int(seed)
    stop_after_success = None if stop_after_success is None else int(stop_after_success)
    # Imported here, after every check: the evaluation package pulls in torch, seconds of start-up.
    from robopolicy.data.store import EpisodeStore
    from robopolicy.evaluation.episodes import SEED_BLOCK, episode_generators, episode_seeds

    seeds = episode_seeds(seed, episodes)
    n_fail = int(round(float(fail_fraction) * episodes))
    failing = set(np.random.default_rng(seed).permutation(episodes)[:n_fail].tolist())

    env = task.make_env(render=render)
    store = None
    try:
        first_obs, _ = env.reset(seed=seeds[0])
        spec = observed_spec(task.spec, first_obs)
        low, high = env.action_space.low, env.action_space.high
        limit = getattr(env, "max_episode_steps", spec.max_episode_steps)
        probe = task.make_expert(np.random.default_rng(0))
        prov = {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "task": task.name, "task_config": task_config, "env": spec.name, "seed": seed, "episodes": episodes, "noise": noise,
            "fail_fraction": float(fail_fraction), "failing_episodes": sorted(failing),
            "fail_behaviour": f"expert for U[0,{fail_prefix}]*{limit} steps, then random walk std {walk_std}",
            "stop_after_success": stop_after_success, "expert": getattr(probe, "name", type(probe).__name__),
            "seed_scheme": f"episode i: env seed seed*{SEED_BLOCK}+i; expert, noise and failure generators seeded by that seed",
            "episode_seeds": seeds,
            "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **dict(provenance or {}),
        }
        if append and path.exists():
            store = EpisodeStore.open(path, mode="a")
            _check_append(store, spec, prov, episodes)
            store.update_attrs({"episodes": episodes, "failing_episodes": prov["failing_episodes"], "episode_seeds": seeds,
                                "appends": [*store.attrs.get("appends", []), {"command": prov["command"], "created": prov["created"], "from_episode": store.n_episodes}]})
        else:
            store = EpisodeStore.create(path, spec, attrs=prov, overwrite=overwrite)
        start = store.n_episodes
        results = []
        t0 = time.perf_counter()
        bar = tqdm(range(start, episodes), desc=f"collect {spec.name or task.name}", unit="ep", disable=not progress, file=sys.stderr)
        for i in bar:
            expert_rng, noise_rng, fail_rng = episode_generators(seeds[i], 3)
            policy = task.make_expert(expert_rng)
            if i in failing:
                prefix = int(fail_rng.integers(0, int(fail_prefix * limit) + 1))
                policy = RandomWalkFailure(policy, fail_rng, prefix, walk_std, low, high)
            episode, record = run_episode(env, policy, seeds[i], noise, noise_rng, stop_after_success)
            store.append_episode(episode)
            results.append(record)
            bar.set_postfix(success=f"{np.mean([r.success for r in results]):.2f}")
        seconds = time.perf_counter() - t0
        summary = summarize(results, seconds, str(path))
        summary["store_episodes"] = store.n_episodes
        store.update_attrs({"summary": summary})
    finally:
        env.close()
        if store is not None:
            store.close()
    return summary


def summarize(results: list, seconds: float, out: str) -> dict[str, Any]:
    """results: the EpisodeRecord of each episode written -> the collection summary (with the records)."""
    steps = int(sum(r.steps for r in results))
    summary = {
        "out": out,
        "episodes": len(results),
        "steps": steps,
        "success_rate": float(np.mean([r.success for r in results])) if results else 0.0,
        "seconds": round(float(seconds), 3),
        "steps_per_second": round(steps / seconds, 1) if seconds > 0 else None,
        "records": [r.to_dict() for r in results],
    }
    modes = [r.mode for r in results]
    if any(m is not None for m in modes):
        summary["modes"] = {str(k): v for k, v in sorted(Counter(modes).items(), key=lambda kv: str(kv[0]))}
    return summary


def format_summary(summary: Mapping[str, Any]) -> str:
    """One human-readable line per figure."""
    lines = [
        f"wrote {summary['episodes']} episodes, {summary['steps']} steps to {summary['out']} (it has {summary.get('store_episodes', summary['episodes'])} episodes)",
        f"success rate {summary['success_rate']:.3f}",
        f"{summary['seconds']:.1f} s ({summary['steps_per_second']} env steps/s incl. expert and writing)",
    ]
    if "modes" in summary:
        lines.append("modes " + ", ".join(f"{k}: {v}" for k, v in summary["modes"].items()))
    return "\n".join(lines)
