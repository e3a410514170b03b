"""The three ``robopolicy-semantics`` modes over one config: ``train``, ``active``, ``transfer``.

``active`` collects the offline real data once, trains the VAE once, then for each strategy runs
the active-learning loop to the budget (a fresh oracle each), evaluating after every round the
offline semantics error on held-out real episodes and the transferred success of the controller.
Results go to ``<run_dir>/results.json`` and ``<run_dir>/curves.png``.
"""

from __future__ import annotations

import hashlib
import json
import io
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from robopolicy.envs import make_task
from robopolicy.errors import ConfigError
from robopolicy.semantics.acquisition import minus_reading
from robopolicy.semantics.active import run_active
from robopolicy.semantics.dynamics import DynamicsGate, check_ranges
from robopolicy.semantics.data import RealEpisodes, collect_real_episodes
from robopolicy.semantics.mapper import load_mapper
from robopolicy.semantics.noise import range_std
from robopolicy.semantics.oracle import AnnotationOracle
from robopolicy.semantics.plots import plot_curves
from robopolicy.semantics.proprio import semantics_split
from robopolicy.semantics.tasks import SemanticsTask, semantics_task
from robopolicy.semantics.transfer import ExpertController, PolicyController, evaluate_transfer, offline_semantics_error
from robopolicy.semantics.vae import train_vae
from robopolicy.utils import atomic_write_bytes, atomic_write_json, seed_everything


ANNOTATION_STREAM = 1  # the oracle's noise generator is default_rng((seed, ANNOTATION_STREAM)); the loop's own streams: active.py


def _task(cfg: DictConfig) -> SemanticsTask:
    return semantics_task(make_task(cfg.task))


def proprio_names(cfg: DictConfig) -> list[str]:
    """``proprio_semantics``: the coordinates read from the robot instead of the mapper (robopolicy/semantics/proprio.py)."""
    names = cfg.proprio_semantics
    if isinstance(names, str) or not OmegaConf.is_list(names) and not isinstance(names, (list, tuple)):
        raise ConfigError(f"proprio_semantics={names!r} must be a list of semantics names, e.g. proprio_semantics=[pusher_x,pusher_y].")
    return [str(n) for n in names]


def controller_for(cfg: DictConfig, task: SemanticsTask):
    """The controller transfer runs: the policy at ``transfer.policy_run_dir``, else the task's scripted expert."""
    if cfg.transfer.policy_run_dir:
        return PolicyController(str(cfg.transfer.policy_run_dir), device=str(cfg.device), task=task)
    return ExpertController(task)


def _with_bounds(cfg: DictConfig, task: SemanticsTask) -> DictConfig:
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))  # unlocked copy
    low, high = task.bounds()
    cfg = OmegaConf.merge(cfg, {"semantics_low": low, "semantics_high": high})
    return cfg


def make_oracle(cfg: DictConfig, truths: list[np.ndarray]) -> AnnotationOracle:
    """A fresh oracle for one strategy: ``cfg.budget`` annotations, label noise ``cfg.annotation_noise`` times each
    dimension's range (cfg with ``semantics_low`` / ``semantics_high``), drawn from its own generator (seed, 1)."""
    std = range_std(cfg.annotation_noise, cfg.semantics_low, cfg.semantics_high, "semantics.annotation_noise")
    return AnnotationOracle(truths, int(cfg.budget), std, np.random.default_rng((int(cfg.seed), ANNOTATION_STREAM)))


class _Cache:
    """What every run of one setting shares (offline data, held-out data, the reference, VAE latents per seed), kept in
    ``cfg.cache_dir`` (null: nothing kept) under a hash of the settings it depends on, so a sweep computes it once:
    the folder under the data's settings (task, real_env, data); the reference's name also under the transfer
    settings (episodes, seed, controller), so more transfer episodes reuse the data; the latents' names under the
    VAE's (vae, vae_trainer), so runs with and without a VAE share the data. Stored as npz (arrays) and json (the
    reference), never pickle."""

    def __init__(self, cfg: DictConfig):
        def digest(keys, n):
            blob = json.dumps({k: OmegaConf.to_container(cfg[k], resolve=True) for k in keys}, sort_keys=True, default=str)
            return hashlib.sha256(blob.encode()).hexdigest()[:n]

        self.dir = Path(cfg.cache_dir) / digest(("task", "real_env", "data"), 16) if cfg.get("cache_dir") else None
        self.vae_key = digest(("vae", "vae_trainer"), 8)
        self.reference_name = f"reference_{digest(('transfer',), 8)}"

    def latents_name(self, seed: int) -> str:
        return f"latents_{self.vae_key}_seed{seed}"

    def episodes(self, name: str, make):
        """make() -> (RealEpisodes, truths); cached as one npz (a cache written before the robot's reading was
        recorded has no ``p<e>`` arrays: its episodes load with ``proprio`` None)."""
        path = None if self.dir is None else self.dir / f"{name}.npz"
        if path is not None and path.exists():
            z = np.load(path)
            n = int(z["n"])
            proprio = [z[f"p{e}"] for e in range(n)] if n and "p0" in z.files else None
            return (RealEpisodes([z[f"i{e}"] for e in range(n)], [z[f"a{e}"] for e in range(n)], proprio=proprio),
                    [z[f"s{e}"] for e in range(n)])
        data, truths = make()
        if path is not None:
            arrs = {"n": np.asarray(len(truths))}
            for e in range(len(truths)):
                arrs.update({f"i{e}": data.images[e], f"a{e}": data.actions[e], f"s{e}": truths[e]})
                if data.proprio is not None:
                    arrs[f"p{e}"] = data.proprio[e]
            buf = io.BytesIO()
            np.savez(buf, **arrs)
            atomic_write_bytes(path, buf.getvalue())
        return data, truths

    def array(self, name: str, make) -> np.ndarray:
        path = None if self.dir is None else self.dir / f"{name}.npy"
        if path is not None and path.exists():
            return np.load(path)
        value = np.asarray(make())
        if path is not None:
            buf = io.BytesIO()
            np.save(buf, value)
            atomic_write_bytes(path, buf.getvalue())
        return value

    def record(self, name: str, make) -> dict:
        path = None if self.dir is None else self.dir / f"{name}.json"
        if path is not None and path.exists():
            return json.loads(path.read_text())
        value = make()
        if path is not None:
            atomic_write_json(path, value)
        return value


def cached_episodes(cfg: DictConfig, name: str) -> tuple[RealEpisodes, list[np.ndarray]]:
    """The ``"offline"`` or ``"test"`` episodes that a ``mode=active`` run of this setting kept in ``cfg.cache_dir``."""
    def missing():
        raise ConfigError(f"No {name} episodes of this setting in cache_dir={cfg.get('cache_dir')!r}; pass the overrides "
                          "of the mode=active run that made it (task, real_env, data, transfer, vae), cache_dir included.")
    return _Cache(cfg).episodes(name, missing)


def cached_latents(cfg: DictConfig) -> np.ndarray:
    """(N, Z) VAE latents of the offline frames that a ``mode=active`` run of this setting kept in ``cfg.cache_dir``."""
    def missing():
        raise ConfigError(f"No VAE latents of this setting in cache_dir={cfg.get('cache_dir')!r}; pass the overrides of a "
                          "mode=active run with a latent strategy (diversity, hybrid) that made them, cache_dir included.")
    return _Cache(cfg).array(_Cache(cfg).latents_name(_vae_seed(cfg)), missing)


def selection_latents(cfg: DictConfig, latents: np.ndarray, data: RealEpisodes) -> np.ndarray:
    """The latents the latent strategies select by: with ``proprio_semantics`` and ``latents_minus_reading``, minus
    their affine fit on the robot's reading (:func:`~robopolicy.semantics.acquisition.minus_reading`)."""
    if not proprio_names(cfg) or not bool(cfg.latents_minus_reading):
        return latents
    reading = data.reading(np.arange(data.n_frames))
    if reading is None:
        raise ConfigError("latents_minus_reading needs the robot's reading of every offline frame and these episodes have "
                          "none; record agent_pos, or set latents_minus_reading=false.")
    return minus_reading(latents, reading)


def _checked(cfg: DictConfig, task: SemanticsTask, names: list[str]) -> DictConfig:
    """cfg with the task's semantics bounds, after every check that needs no data: noise levels, the proprio
    names and the strategies. A bad setting stops here, before anything is collected or written."""
    cfg = _with_bounds(cfg, task)
    for key in ("annotation_noise", "transition_noise"):
        range_std(cfg[key], cfg.semantics_low, cfg.semantics_high, f"semantics.{key}")
    semantics_split(task, proprio_names(cfg))
    check_ranges(cfg.augment_dynamics.mass_range, cfg.augment_dynamics.friction_range)
    unknown = [n for n in names if n not in cfg.strategies]
    if unknown:
        raise ConfigError(f"Unknown strategies {unknown}; pick from {sorted(cfg.strategies)} in run_strategies.")
    return cfg


def dynamics_gate(cfg: DictConfig, task: SemanticsTask, sim, real: dict, split) -> DynamicsGate | None:
    """``semantics.augment_dynamics`` as the loop's gate on ``sim`` (None when samples is 0); ``cfg`` has the bounds.
    Only the coordinates the mapper learns are checked: the robot measures the others itself (``split``)."""
    ad = cfg.augment_dynamics
    if int(ad.samples) == 0:
        return None
    spread = np.full(len(cfg.semantics_low), np.inf, np.float32)
    cols = np.arange(len(spread)) if split is None else split.predicted_index
    width = np.asarray(cfg.semantics_high, np.float64) - np.asarray(cfg.semantics_low, np.float64)
    spread[cols] = float(ad.max_spread) * width[cols]
    return DynamicsGate(task.object_dynamics(sim, real), int(ad.samples), list(ad.mass_range), list(ad.friction_range),
                        spread, seed=int(cfg.seed))


def check_active_setting(cfg: DictConfig) -> None:
    """Every check of a ``mode=active`` run that needs no data (task, noise levels, proprio names, strategies)."""
    _checked(cfg, _task(cfg), [str(n) for n in cfg.run_strategies])


def _shared_inputs(cfg: DictConfig, task: SemanticsTask, real: dict, cache: _Cache, controller):
    """The offline episodes, the held-out episodes and the true-semantics reference of this setting (cached)."""
    d = cfg.data
    offline = cache.episodes("offline", lambda: collect_real_episodes(
        task, real, int(d.episodes), int(d.seed), float(d.behaviour_noise), reach_steps=int(d.reach_steps)))
    test = cache.episodes("test", lambda: collect_real_episodes(
        task, real, int(d.test_episodes), int(d.test_seed), float(d.behaviour_noise), reach_steps=int(d.reach_steps)))
    reference = cache.record(cache.reference_name, lambda: evaluate_transfer(None, controller, task, real, int(cfg.transfer.episodes),
                                                                 int(cfg.transfer.seed), progress=bool(cfg.progress)))
    return offline, test, reference


def _needs_latents(cfg: DictConfig, names: list[str]) -> bool:
    return any(getattr(instantiate(cfg.strategies[n]), "needs_latents", False) for n in names)


def _vae_seed(cfg: DictConfig) -> int:
    return int(cfg.seed if cfg.get("vae_seed") is None else cfg.vae_seed)


def _latents(cfg: DictConfig, cache: _Cache, data: RealEpisodes, vae_dir: Path) -> np.ndarray:
    """VAE latents of every offline frame (``latents_<vae settings>_seed<k>`` in the cache; the VAE is trained in ``vae_dir``)."""
    frames = np.concatenate(data.images)
    seed = _vae_seed(cfg)
    return cache.array(cache.latents_name(seed), lambda: train_vae(frames, cfg.vae, cfg.vae_trainer, vae_dir, seed=seed).latents(frames))


def prepare_cache(cfg: DictConfig) -> Path:
    """Make what every run of this setting shares, once, in ``cfg.cache_dir``: the offline and held-out episodes, the
    reference and, when a strategy of ``run_strategies`` reads latents, the VAE latents of ``vae_seed`` (null: ``seed``;
    the VAE checkpoint in ``<cache>/vae_seed<k>``). Runs started side by side afterwards only read it; without this, each
    would collect the same data itself. Returns the cache folder."""
    cache = _Cache(cfg)
    if cache.dir is None:
        raise ConfigError("prepare_cache needs cache_dir=<a folder>; without one nothing is kept for the runs to share.")
    task = _task(cfg)
    names = [str(n) for n in cfg.run_strategies]
    cfg = _checked(cfg, task, names)
    real = OmegaConf.to_container(cfg.real_env, resolve=True)
    seed_everything(int(cfg.seed))
    (data, _), _, _ = _shared_inputs(cfg, task, real, cache, controller_for(cfg, task))
    if _needs_latents(cfg, names):
        _latents(cfg, cache, data, cache.dir / f"vae_seed{_vae_seed(cfg)}")
    return cache.dir


def run_active_experiment(cfg: DictConfig, strategies: list[str] | None = None, per_round: int | None = None) -> dict:
    seed_everything(int(cfg.seed))
    task = _task(cfg)
    names = [str(n) for n in (strategies if strategies is not None else cfg.run_strategies)]
    cfg = _checked(cfg, task, names)
    proprio = proprio_names(cfg)
    split = semantics_split(task, proprio)
    if per_round is not None:
        cfg.per_round = int(per_round)
    run_dir = Path(cfg.run_dir)
    real = OmegaConf.to_container(cfg.real_env, resolve=True)
    cache = _Cache(cfg)
    controller = controller_for(cfg, task)
    (data, truths), (test, test_truths), reference = _shared_inputs(cfg, task, real, cache, controller)
    test_ids = np.arange(test.n_frames)
    test_images, test_truth = test.stacked(test_ids, int(cfg.mapper.n_frames)), np.concatenate(test_truths)
    test_reading = test.reading(test_ids)
    sim = task.make_sim()
    sim.reset(seed=int(cfg.seed))
    latents = selection_latents(cfg, _latents(cfg, cache, data, run_dir / "vae"), data) if _needs_latents(cfg, names) else None
    gate = dynamics_gate(cfg, task, sim, real, split)
    follow = task.follow_reading if bool(cfg.augment_follow_reading) else None

    curves: dict[str, list[dict]] = {}
    for name in names:
        strategy = instantiate(cfg.strategies[name])
        oracle = make_oracle(cfg, truths)

        def on_round(mapper, labels, annotations, _oracle=oracle, name=name):
            rec = offline_semantics_error(mapper, test_images, test_truth, task, proprio, test_reading)
            labeled = labels.labeled
            rec["label_error_m"] = float(np.abs(labels.labels[labeled] - np.concatenate(truths)[labeled]).mean())
            if cfg.transfer.every_round or _oracle.remaining == 0:
                rec.update(evaluate_transfer(mapper, controller, task, real, int(cfg.transfer.episodes), int(cfg.transfer.seed),
                                             int(cfg.mapper.n_frames), proprio, progress=bool(cfg.progress)))
            print(f"[{name}] annotations={annotations} labeled={len(labeled)} "
                  f"err={100 * rec['offline_error_m']:.2f}cm success={rec.get('success_rate', float('nan')):.2f}", flush=True)
            return rec

        curves[name] = run_active(strategy, data, oracle, sim, cfg, run_dir / name, latents, on_round, seed=int(cfg.seed),
                                  split=split, gate=gate, follow=follow)
    sim.close()
    results = {"reference_true_semantics": reference, "curves": curves, "budget": int(cfg.budget),
               "offline_frames": data.n_frames, "config": OmegaConf.to_container(cfg, resolve=True)}
    atomic_write_json(run_dir / "results.json", results)
    plottable = {n: [r for r in rs if "success_rate" in r] for n, rs in curves.items()}
    plot_curves(plottable, run_dir / "curves.png", reference,
                title=f"{task.name}, {cfg.transfer.episodes} episodes/point, segment {cfg.segment_length}")
    return results


def run_train(cfg: DictConfig) -> dict:
    """One strategy, one round up to the budget: a mapper on that annotated set (``run_dir/<strategy>/round_00``)."""
    return run_active_experiment(OmegaConf.merge(cfg, {"transfer": {"every_round": True}}), [str(cfg.train.strategy)],
                                 per_round=int(cfg.budget))


def run_transfer(cfg: DictConfig) -> dict:
    if not cfg.mapper_dir:
        raise ConfigError("mode=transfer needs mapper_dir=<a mapper run folder, e.g. runs/sem/diversity/round_04>.")
    task = _task(cfg)
    proprio = proprio_names(cfg)
    mapper = load_mapper(str(cfg.mapper_dir))
    semantics_split(task, proprio).check_mapper(mapper.semantics_names, where=f"The mapper at {str(cfg.mapper_dir)!r}")
    real = OmegaConf.to_container(cfg.real_env, resolve=True)
    controller = controller_for(cfg, task)
    n, seed, progress = int(cfg.transfer.episodes), int(cfg.transfer.seed), bool(cfg.progress)
    # What was scored travels with the figures (tools/semantics_sweep_plot.py --rescored places them by mapper_dir).
    out = {"mapper_dir": str(cfg.mapper_dir), "policy_run_dir": cfg.transfer.policy_run_dir, "transfer_seed": seed,
           "mapper": evaluate_transfer(mapper, controller, task, real, n, seed, mapper.n_frames, proprio, progress=progress),
           "true_semantics": evaluate_transfer(None, controller, task, real, n, seed, progress=progress)}
    atomic_write_json(Path(cfg.run_dir) / "transfer.json", out)
    return out


def main_modes(cfg: Any) -> dict:
    modes = {"active": run_active_experiment, "train": run_train, "transfer": run_transfer}
    if cfg.mode not in modes:
        raise ConfigError(f"Unknown mode {cfg.mode!r}; use mode=train, active or transfer.")
    return modes[cfg.mode](cfg)
