"""Closed-loop evaluation of a policy on a task in gymnasium vector environments.

The episode protocol (seeds, end rule, per-episode record) is :mod:`robopolicy.evaluation.episodes`:
episode ``i`` of replicate ``seed`` is reset with ``seed * SEED_BLOCK + i``, ends at its first success,
termination, truncation or ``max_episode_steps``, and is reported as an ``EpisodeRecord``; this
module only runs many of them at once. Episodes run in batches of ``num_envs``
environments (``gymnasium.vector.SyncVectorEnv`` or ``AsyncVectorEnv`` with one subprocess per
environment); one batched ``policy.sample`` call serves every environment of a batch through
:class:`~robopolicy.policies.base.RecedingHorizonController`.

Autoreset: the vector env runs in ``AutoresetMode.NEXT_STEP``. An environment whose episode has
ended (success, termination or truncation) is *inactive*: it receives zero actions and everything
it returns is ignored, including the automatic reset gymnasium performs on its next step. A batch
runs until every environment is inactive (or ``max_episode_steps`` steps); the next batch then
resets all environments explicitly with its own seeds. ``AutoresetMode.DISABLED`` would be
simpler to read but asserts when a finished environment is stepped, which happens whenever one
environment of a batch finishes before the others.
"""

from __future__ import annotations

import functools
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch

from robopolicy.errors import ConfigError, PolicyOutputError, TaskError
from robopolicy.evaluation.episodes import SEED_BLOCK  # noqa: F401 - re-exported: older imports name it here
from robopolicy.evaluation.episodes import END_REASONS, NO_SUCCESS_FLAG, EpisodeRecord, end_codes, episode_seeds, info_mode
from robopolicy.evaluation.stats import percentiles_ms, wilson_interval
from robopolicy.evaluation.video import EpisodeRecorder
from robopolicy.policies.base import RecedingHorizonController


def make_vector_env(task, num_envs: int, vector: str = "sync", render: bool | None = None) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``task.make_env(render=render)`` in a sync or async (subprocess) vector env."""
    from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

    fns = [functools.partial(task.make_env, render=render) for _ in range(int(num_envs))]
    if vector == "sync":
        return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.NEXT_STEP)
    if vector == "async":
        # "spawn": workers must not inherit the parent's torch threads or an OpenGL context.
        return AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.NEXT_STEP, context="spawn")
    raise ConfigError(f"Unknown vector={vector!r}; use vector=sync (one process) or vector=async (one subprocess per env).")


def _info_array(info: Mapping[str, Any], key: str, n: int) -> np.ndarray | None:
    """Per-env values of ``info[key]`` from a vector env's info dict (entries absent from an env -> None)."""
    if key not in info:
        return None
    vals = np.asarray(info[key])
    mask = np.asarray(info.get(f"_{key}", np.ones(n, dtype=bool)), dtype=bool)
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = vals[i] if mask[i] else None
    return out


def _frames(obs: Mapping[str, np.ndarray], venv: gym.vector.VectorEnv, camera_key: str | None) -> list | None:
    """One uint8 (H, W, 3) frame per env: the camera observation, else ``env.render()``."""
    if camera_key is not None:
        return list(obs[camera_key])
    try:
        frames = venv.call("render")
    except Exception:  # noqa: BLE001 - the env has no render_mode: nothing to film
        return None
    return None if frames is None or any(f is None for f in frames) else list(frames)


def _camera_key(obs: Mapping[str, np.ndarray], preferred: list[str]) -> str | None:
    for k in list(preferred) + list(obs):
        v = np.asarray(obs[k])
        if v.dtype == np.uint8 and v.ndim == 4 and v.shape[-1] == 3:
            return k
    return None


def _run_batch(policy, venv, seeds: list[int], n_real: int, max_steps: int, goal, recorder: EpisodeRecorder,
               first_episode: int, camera_pref: list[str]) -> dict[str, Any]:
    """Run one batch to the end of every real episode; the last ``B - n_real`` envs are padding."""
    B = venv.num_envs
    obs, _ = venv.reset(seed=list(seeds))
    goal_b = None if goal is None else {k: np.broadcast_to(np.asarray(v), (B,) + np.shape(v)) for k, v in goal.items()}
    ctrl = RecedingHorizonController(policy, goal=goal_b)
    ctrl.reset()
    active = np.arange(B) < n_real
    success = np.zeros(B, dtype=bool)
    success_steps = np.zeros(B, dtype=np.int64)  # steps since the first success (the end rule's count)
    returns = np.zeros(B, dtype=np.float64)
    lengths = np.zeros(B, dtype=np.int64)
    codes = np.zeros(B, dtype=np.int8)  # why each episode ended (END_REASONS[code])
    modes: list[Any] = [None] * B
    filmed = [i for i in range(n_real) if recorder.wants(first_episode + i)]
    cam = _camera_key(obs, camera_pref) if filmed else None

    def film(o):
        frames = _frames(o, venv, cam) if filmed else None
        for i in filmed:
            if frames is not None and active[i]:
                recorder.add(first_episode + i, frames[i])

    film(obs)
    steps = 0
    for _ in range(max_steps):
        if not active.any():
            break
        action = np.asarray(ctrl.act(obs), dtype=np.float32)
        bad = active & ~np.isfinite(action).all(axis=-1)
        if bad.any():  # never step a simulator with NaN controls, and never score them as "success 0"
            i = int(np.flatnonzero(bad)[0])
            raise PolicyOutputError(f"The policy produced non-finite actions (NaN/inf) at step {int(lengths[i])} of the episode "
                                    f"with seed {seeds[i]}; its weights or normalizer are broken, load another checkpoint or retrain.")
        action = np.where(active[:, None], action, 0.0).astype(np.float32)
        obs, reward, terminated, truncated, info = venv.step(action)
        steps += int(active.sum())
        returns[active] += np.asarray(reward, dtype=np.float64)[active]
        lengths[active] += 1
        succ = _info_array(info, "success", B)
        if succ is None:
            raise TaskError(NO_SUCCESS_FLAG)
        succ_now = np.array([bool(s) if s is not None else False for s in succ])
        mode = _info_array(info, "mode", B)
        if mode is not None:
            for i in np.flatnonzero(active):
                modes[i] = info_mode(mode[i]) or modes[i]
        success |= succ_now & active
        success_steps[active & success] += 1
        film(obs)
        code = end_codes(lengths, success_steps, terminated, truncated, 0, max_steps)
        ended = active & (code > 0)
        codes[ended] = code[ended]
        active &= ~ended
    records = [EpisodeRecord(int(seeds[i]), bool(success[i]), int(lengths[i]), float(returns[i]), END_REASONS[codes[i]], modes[i])
               for i in range(n_real)]
    return {
        "success": success[:n_real].tolist(),
        "returns": returns[:n_real].tolist(),
        "lengths": lengths[:n_real].tolist(),
        "modes": modes[:n_real],
        "records": records,
        "latencies_s": list(ctrl.latencies_s),
        "steps": steps,
    }


def evaluate_policy(policy, task, episodes: int, seed: int = 0, num_envs: int = 1, vector: str = "sync",
                    video_dir: str | Path | None = None, video_episodes: int = 0, goal: Mapping[str, Any] | None = None,
                    progress: bool = True, max_episode_steps: int | None = None) -> dict[str, Any]:
    """Run ``episodes`` closed-loop episodes of ``policy`` on ``task`` and summarise them.

    policy: anything with ``sample(obs {k: (B, To, ...)}, n, goal) -> (B, n, T, A)``, ``obs_keys``,
    ``obs_horizon``, ``exec_horizon`` (a Policy or a ValueGuidedPolicy).
    goal: {key: (...)} one goal for every episode (goal-conditioned policies), or None.
    An episode succeeds if ``info["success"]`` is true at any step; it ends at success,
    termination or truncation (``max_episode_steps`` defaults to the task spec's), the end rule of
    :func:`robopolicy.evaluation.episodes.end_codes` with ``stop_after_success=0``.
    Policy noise is drawn from a torch generator seeded with each batch's first seed, so the same
    (seed, episodes, num_envs) gives identical episodes; the caller's RNG state is left untouched.

    Returns success_rate, ci95 [lo, hi] (Wilson), episodes, n_success, mean_return, returns,
    episode_lengths, latency_ms {p50, p90, mean, n} of batched chunk inference, successes, seeds,
    records (one ``EpisodeRecord.to_dict()`` per episode),
    modes {mode: count} (only when info carries "mode"), episode_modes, videos, env_steps,
    wall_s, env_setup_s (making the environments), env_steps_per_s (policy inference included,
    environment set-up excluded), num_envs, vector.
    """
    episodes, num_envs, seed = int(episodes), int(num_envs), int(seed)
    if episodes < 1:
        raise ConfigError(f"episodes={episodes} must be at least 1.")
    if num_envs < 1:
        raise ConfigError(f"num_envs={num_envs} must be at least 1.")
    if vector not in ("sync", "async"):
        raise ConfigError(f"Unknown vector={vector!r}; use vector=sync (one process) or vector=async (one subprocess per env).")
    num_envs = min(num_envs, episodes)
    spec = task.spec
    max_steps = int(max_episode_steps or spec.max_episode_steps)
    seeds = episode_seeds(seed, episodes)
    recorder = EpisodeRecorder(video_dir, min(int(video_episodes), episodes) if video_dir else 0)
    # Film from a camera observation when the task has one; otherwise ask the task for camera
    # images (render=True) only in the batches that contain filmed episodes.
    render_for_video = recorder.n_episodes > 0 and not spec.rgb_keys
    if hasattr(policy, "eval"):
        policy.eval()
    dev = getattr(policy, "device", torch.device("cpu"))
    rng_devices = [dev.index or 0] if getattr(dev, "type", "cpu") == "cuda" else []

    envs: dict[bool, gym.vector.VectorEnv] = {}
    out = {"success": [], "returns": [], "lengths": [], "modes": [], "records": [], "latencies_s": [], "steps": 0}
    videos: list[str] = []
    t0 = time.perf_counter()
    setup_s = 0.0  # making the environments (subprocess start-up for async), not part of the rollout rate
    from tqdm.auto import tqdm

    bar = tqdm(total=episodes, disable=not progress, desc=f"eval {getattr(task, 'name', '') or spec.name}", unit="ep")
    try:
        for start in range(0, episodes, num_envs):
            batch = seeds[start : start + num_envs]
            n_real = len(batch)
            # Padding envs of a short last batch get seeds past the list and are ignored.
            batch_seeds = batch + [seeds[-1] + 1 + j for j in range(num_envs - n_real)]
            render = True if (render_for_video and start < recorder.n_episodes) else None
            if render not in envs:
                t_make = time.perf_counter()
                envs[render] = make_vector_env(task, num_envs, vector, render=render)
                setup_s += time.perf_counter() - t_make
            with torch.random.fork_rng(devices=rng_devices):
                torch.manual_seed(batch[0])
                res = _run_batch(policy, envs[render], batch_seeds, n_real, max_steps, goal, recorder, start, spec.rgb_keys)
            for key in ("success", "returns", "lengths", "modes", "records", "latencies_s"):
                out[key].extend(res[key])
            out["steps"] += res["steps"]
            for i in range(n_real):
                if recorder.wants(start + i):
                    path = recorder.flush(start + i, batch[i], res["success"][i], spec.control_hz)
                    if path is None:
                        warnings.warn("No video frames: the task has no camera observation and env.render() gave none.", stacklevel=2)
                    else:
                        videos.append(str(path))
            bar.update(n_real)
            bar.set_postfix(success=f"{np.mean(out['success']):.2f}")
    finally:
        bar.close()
        for venv in envs.values():
            venv.close()

    wall_s = time.perf_counter() - t0
    n_success = int(np.sum(out["success"]))
    lo, hi = wilson_interval(n_success, episodes)
    result: dict[str, Any] = {
        "success_rate": n_success / episodes,
        "ci95": [lo, hi],
        "episodes": episodes,
        "n_success": n_success,
        "mean_return": float(np.mean(out["returns"])),
        "returns": [float(r) for r in out["returns"]],
        "episode_lengths": [int(x) for x in out["lengths"]],
        "latency_ms": percentiles_ms(out["latencies_s"], (50, 90)),
        "successes": [bool(s) for s in out["success"]],
        "seeds": seeds,
        "records": [r.to_dict() for r in out["records"]],
        "num_envs": num_envs,
        "vector": vector,
        "env_steps": int(out["steps"]),
        "wall_s": wall_s,
        "env_setup_s": setup_s,
        "env_steps_per_s": out["steps"] / (wall_s - setup_s) if wall_s > setup_s else None,
        "videos": videos,
    }
    if any(m is not None for m in out["modes"]):
        counts: dict[str, int] = {}
        for m in out["modes"]:
            counts[str(m)] = counts.get(str(m), 0) + 1
        result["modes"] = dict(sorted(counts.items()))
        result["episode_modes"] = [None if m is None else str(m) for m in out["modes"]]
    return result
