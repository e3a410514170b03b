"""Where a strategy's annotations fall, how typical they are, and where a mapper trained on them errs.

    python tools/semantics_picks_diag.py --rules 50 \
        --labels diversity=RUN_D/diversity/round_00/labels.npz random_episodes=RUN_R/random_episodes/round_00/labels.npz \
        --mappers diversity=RUN_D/diversity/round_00 random_episodes=RUN_R/random_episodes/round_00 \
        -- +experiment=semantics_metaworld_push cache_dir=experiments/mwcov/cache   # the mode=active runs' overrides

Per label set (``--labels NAME=labels.npz`` of a run, and with ``--rules K`` the diversity picks of each segment rule for
the first K annotations, in rounds of ``per_round``, from the cached VAE latents):
- the annotated episodes, the median time step of the annotated frames, and the share of them before
  ``segment_length`` (where every closed-loop rollout starts);
- typicality: the median, over the labelled frames (the annotated segments), of the mean VAE-latent distance to the
  20 nearest offline frames, against that median over all offline frames. Farther = sparser region.
The rule picks use the latents the runs select by (``latents_minus_reading``); typicality is measured on the VAE's own.
With the robot's reading recorded: the share of the latent variance an affine fit on it explains.
Each label set's annotations shared with the first set are counted (do two seeds annotate the same frames?).
Per mapper (``--mappers NAME=round folder``): the held-out error of every learned group, by time-step bin, and of
each ensemble member alone over all held-out frames (one bad member, or all of them).
Per round (``--scores NAME=round folder``): the ensemble variance and the latent distance to the labelled set over the
unlabelled pool frames after that round, each scaled by its largest value (median, 90th and 99th percentile): how
unevenly the two are spread (hybrid weighed them so until 2026-12-08; it now weighs their ranks).
Reads the setting's cache only (offline and test episodes, latents); trains nothing.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

NEIGHBOURS, SAMPLE = 20, 3000


def knn_distance(latents: np.ndarray, sample: int = SAMPLE, k: int = NEIGHBOURS, seed: int = 0) -> np.ndarray:
    """(N,) mean distance of each latent to its k nearest among ``sample`` frames drawn from all (itself excluded)."""
    rng = np.random.default_rng(seed)
    ref = latents[rng.choice(len(latents), size=min(sample, len(latents)), replace=False)].astype(np.float64)
    out = np.empty(len(latents))
    for i in range(0, len(latents), 1024):  # in blocks: the full N x sample x Z difference would not fit
        x = latents[i:i + 1024].astype(np.float64)
        d2 = (x ** 2).sum(1)[:, None] + (ref ** 2).sum(1)[None] - 2 * x @ ref.T
        d = np.sort(np.sqrt(np.maximum(d2, 0)), axis=1)
        d = np.where(d[:, :1] < 1e-9, d[:, 1:k + 1], d[:, :k])  # a frame that is in the sample is not its own neighbour
        out[i:i + 1024] = d.mean(1)
    return out


def describe(annotated: np.ndarray, episode_of: np.ndarray, t_of: np.ndarray, knn: np.ndarray, segment_length: int,
             reference: np.ndarray | None = None) -> dict:
    """Where the annotated frames fall; ``shared``: how many of them ``reference`` (another set's annotations) holds."""
    from robopolicy.semantics import acquisition as acq

    annotated = np.asarray(annotated, int)
    labelled = np.unique(np.concatenate([acq.segment_cover(int(f), episode_of, segment_length) for f in annotated]))
    shared = len(annotated) if reference is None else int(np.isin(annotated, np.asarray(reference, int)).sum())
    return {"annotations": len(annotated), "episodes": len(np.unique(episode_of[annotated])),
            "t_median": float(np.median(t_of[annotated])), "start_share": float((t_of[annotated] < segment_length).mean()),
            "knn_labelled": float(np.median(knn[labelled])), "knn_all": float(np.median(knn)), "shared": shared}


def term_quantiles(values: np.ndarray, candidates: np.ndarray, qs=(50, 90, 99)) -> list[float]:
    """Percentiles ``qs`` of ``values`` (N,) over the ``candidates`` (N,) bool frames, ``values`` scaled by their
    largest value over the candidates."""
    v = np.asarray(values, np.float64)[np.asarray(candidates, bool)]
    return [float(x) for x in np.percentile(v / max(v.max(initial=0.0), 1e-12), qs)]


def rule_picks(latents, episode_of, budget: int, per_round: int, segment_length: int, rule: str) -> np.ndarray:
    """The diversity picks of ``rule`` over rounds, the labelled set growing by each pick's segment, as the loop does."""
    from robopolicy.semantics import acquisition as acq

    return acq.picks_in_rounds(lambda lab, k, p: acq.diversity_episodes(latents, episode_of, lab, k, segment_length,
                                                                         annotated=p, segment=rule),
                               episode_of, budget, per_round, segment_length)


class MemberView:
    """One ensemble member of a mapper, predicting as the mapper does (metres), for the per-member error."""

    def __init__(self, mapper, index: int):
        self.mapper, self.index = mapper, int(index)
        self.semantics_names = getattr(mapper, "semantics_names", None)

    def predict(self, images, reading=None):
        import torch

        sub = self.mapper.predict(images, reading)[1][self.index : self.index + 1]
        return self.mapper.unnormalize(torch.as_tensor(sub[0])).numpy(), sub


def _named(items: list[str], what: str) -> list[tuple[str, str]]:
    from robopolicy.errors import ConfigError

    out = []
    for it in items:
        if "=" not in it:
            raise ConfigError(f"--{what} {it!r} has no name; write NAME=PATH.")
        out.append(tuple(it.split("=", 1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", nargs="*", default=[], help="NAME=labels.npz of mode=active runs of this setting")
    ap.add_argument("--rules", type=int, default=0, help="also the diversity picks of each segment rule, this many")
    ap.add_argument("--mappers", nargs="*", default=[], help="NAME=round folder (with checkpoints/) of those runs")
    ap.add_argument("--bins", type=int, nargs="+", default=[30, 60, 100], help="time-step bin edges of the mapper table")
    ap.add_argument("--scores", nargs="*", default=[], help="NAME=round folder (checkpoints/, labels.npz): hybrid's terms after it")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.errors import ConfigError
    from robopolicy.semantics import acquisition as acq
    from robopolicy.semantics import experiment as ex
    from robopolicy.semantics.mapper import load_mapper
    from robopolicy.semantics.transfer import offline_semantics_error

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.create(OmegaConf.to_container(compose("semantics", overrides=list(args.overrides)), resolve=True))
    task = ex._task(cfg)
    cfg = ex._checked(cfg, task, [])
    seg = int(cfg.segment_length)
    data, _ = ex.cached_episodes(cfg, "offline")
    sets = [(n, np.load(p)["annotated"]) for n, p in _named(args.labels, "labels")]
    if args.rules or sets or args.scores:
        latents = ex.selection_latents(cfg, ex.cached_latents(cfg), data)  # what the run's strategies select by
        if len(latents) != data.n_frames:
            raise ConfigError(f"The cached latents hold {len(latents)} frames and the offline data {data.n_frames}; clear the cache.")
        sets += [(f"diversity, {r} segment", rule_picks(latents, data.episode_of, args.rules, int(cfg.per_round), seg, r))
                 for r in (acq.SEGMENT_RULES if args.rules else ())]
        raw = ex.cached_latents(cfg)
        reading = data.reading(np.arange(data.n_frames))
        if reading is not None:
            left = acq.minus_reading(raw, reading)
            print(f"the robot's reading explains {100 * (1 - left.var(0).sum() / raw.var(0).sum()):.0f} % of the latent "
                  "variance (affine least-squares fit)")
        knn = knn_distance(raw)
        first = sets[0][1] if sets else None
        print(f"{'label set':32s} annot. episodes t_median t<{seg} knn(labelled) knn(all) shared(first set)")
        for name, ann in sets:
            d = describe(ann, data.episode_of, data.t_of, knn, seg, first)
            print(f"{name:32s} {d['annotations']:6d} {d['episodes']:8d} {d['t_median']:8.0f} {d['start_share']:5.2f} "
                  f"{d['knn_labelled']:13.3f} {d['knn_all']:8.3f} {d['shared']:6d}")
    if args.scores:
        from robopolicy.semantics.active import pool_predictions

        print("over the unlabelled pool frames, each scaled by its largest value (percentiles 50 / 90 / 99)")
        pool = np.zeros(data.n_frames, bool)
        pool[:: max(1, int(cfg.pool_stride))] = True
        for name, folder in _named(args.scores, "scores"):
            labeled = np.load(os.path.join(folder, "labels.npz"))["age"] >= 0
            var = acq.ensemble_variance(pool_predictions(load_mapper(folder), data, int(cfg.pool_stride), int(cfg.mapper.n_frames)))
            terms = {"variance": var, "distance": acq.latent_distance(latents, labeled)}
            print(f"{name:24s} " + "   ".join(f"{k} " + " / ".join(f"{q:.3f}" for q in term_quantiles(v, pool & ~labeled))
                                           for k, v in terms.items()))
    if args.mappers:
        test, test_truths = ex.cached_episodes(cfg, "test")
        ids = np.arange(test.n_frames)
        images, truth, reading = test.stacked(ids, int(cfg.mapper.n_frames)), np.concatenate(test_truths), test.reading(ids)
        edges = [0, *args.bins, int(test.t_of.max()) + 1]
        proprio = ex.proprio_names(cfg)
        print("held-out error by time step (cm for positions)")
        for name, folder in _named(args.mappers, "mappers"):
            mapper = load_mapper(folder)
            for a, b in zip(edges[:-1], edges[1:]):
                m = (test.t_of >= a) & (test.t_of < b)
                r = offline_semantics_error(mapper, images[m], truth[m], task, proprio, None if reading is None else reading[m])
                parts = " ".join(f"{k[8:]} {100 * v if k.endswith('_m') else v:.2f}" for k, v in r.items()
                                 if k.startswith("offline_") and k != "offline_error_se_m" and v > 0)
                print(f"{name:24s} t [{a}, {b}): {m.sum():4d} frames  {parts}")
            for i in range(len(mapper.members)):
                r = offline_semantics_error(MemberView(mapper, i), images, truth, task, proprio, reading)
                parts = " ".join(f"{k[8:]} {100 * v if k.endswith('_m') else v:.2f}" for k, v in r.items()
                                 if k.startswith("offline_") and k != "offline_error_se_m" and v > 0)
                print(f"{name:24s} member {i}: all {len(truth)} frames  {parts}")


if __name__ == "__main__":
    main()
