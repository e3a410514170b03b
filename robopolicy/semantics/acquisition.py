"""Acquisition functions: which frames of the offline data a person annotates next.

Each function is short and pure: arrays in, frame ids out, randomness from a passed generator.
Frames are global ids; ``episode_of`` (N,) and ``t_of`` (N,) locate them. When an annotation will
be carried through a segment of L frames by pair augmentation, picking a frame also covers the
next L - 1 frames of its episode (:func:`segment_cover`), so later picks avoid them, and the score-based rules
(variance, hybrid) rank a start by what its whole segment would newly label (:func:`segment_gains`).

Why not scikit-activeml or baal (both checked, scikit-activeml 1.0.1 and baal 2.1.0): the
scikit-activeml regression strategies (GreedySamplingX = farthest-first on points,
QueryByCommittee) take scikit-learn estimators and one point per sample, while ours pick
*episodes* by a set distance, then a segment inside the episode, and score a torch ensemble;
baal targets MC-dropout classification heuristics and hard-requires jupyter, structlog<23 and
torchmetrics. Each function here is a few lines of numpy, so neither is a dependency.
"""

from __future__ import annotations

import numpy as np

from robopolicy.errors import ConfigError


def segment_cover(frame: int, episode_of: np.ndarray, segment_length: int) -> np.ndarray:
    """Ids of the frames a pair-augmented annotation of ``frame`` labels: (≤ L,) within its episode."""
    n = len(episode_of)
    ids = np.arange(frame, min(frame + segment_length, n))
    return ids[episode_of[ids] == episode_of[frame]]


def random_frames(candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """candidates: (C,) frame ids -> (min(k, C),) distinct ids drawn uniformly."""
    return rng.choice(np.asarray(candidates), size=min(int(k), len(candidates)), replace=False)


def segment_starts(n: int, segment_length: int) -> np.ndarray:
    """Starts of ceil(n / L) segments of L frames, evenly spaced from 0 to n - L, that tile an episode of n frames.

    Every frame lies in one or two segments, the first and the last frame included, and every segment fits.
    """
    L = max(1, int(segment_length))
    if n <= L:
        return np.zeros(1, dtype=int)
    k = -(-n // L)
    return np.round(np.linspace(0, n - L, k)).astype(int)


def random_episodes(episode_of: np.ndarray, t_of: np.ndarray, chosen_episodes: np.ndarray, k: int,
                    segment_length: int, rng: np.random.Generator) -> np.ndarray:
    """Random not-yet-chosen episodes, one segment each, drawn uniformly among the episode's tiling segments.

    episode_of, t_of: (N,); chosen_episodes: (S,) -> (≤ k,) frame ids.
    The start comes from :func:`segment_starts`, so every frame is (about) equally likely to be
    labelled. A start drawn uniformly among those whose segment fits would label frame t < L - 1 only
    from the t + 1 starts <= t (frame 0 from start 0 alone): the first L - 1 frames, where a closed-loop
    rollout begins (on planar push: the approach, with the pusher far from the puck), got up to L times
    fewer labels than the rest.
    """
    episodes = np.setdiff1d(np.unique(episode_of), chosen_episodes)
    if len(episodes) == 0:  # every episode has an annotation: start over
        episodes = np.unique(episode_of)
    picks = rng.choice(episodes, size=min(int(k), len(episodes)), replace=False)
    out = []
    for e in picks:
        frames = np.flatnonzero(episode_of == e)
        out.append(frames[rng.choice(segment_starts(len(frames), segment_length))])
    return np.asarray(out, dtype=int)


def min_distances(points: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """points: (N, Z), selected: (S, Z) -> (N,) distance to the nearest selected point (inf if S = 0)."""
    if len(selected) == 0:
        return np.full(len(points), np.inf)
    d2 = ((points[:, None, :] - selected[None, :, :]) ** 2).sum(-1)
    return np.sqrt(d2.min(1))


def minus_reading(latents: np.ndarray, reading: np.ndarray) -> np.ndarray:
    """latents (N, Z), reading (N, P) -> (N, Z) the latents minus their least-squares affine fit on the reading.

    When the robot measures part of the semantics itself (``proprio_semantics``), the VAE's latents still spend much of
    their variance on it (the arm is the largest thing that moves in a Meta-World image: its hand and gripper reading
    explains 31 % of the latent variance), and farthest-first then annotates unusual arm poses, which the mapper does
    not need. What is left after the fit is the variation the reading does not explain: objects, goal, the scene.
    """
    reading = np.asarray(reading, np.float64)
    if len(reading) != len(latents):
        raise ValueError(f"{len(latents)} latents and {len(reading)} readings; pass one reading per frame.")
    design = np.c_[reading, np.ones(len(reading))]
    coef, *_ = np.linalg.lstsq(design, np.asarray(latents, np.float64), rcond=None)
    return (latents - design @ coef).astype(np.float32)


def farthest_segment(dist: np.ndarray, segment_length: int, labeled: np.ndarray | None = None) -> int | None:
    """dist: (T,) latent distance of one episode's frames to the labelled set -> start of the tiling segment
    (:func:`segment_starts`) whose frames are farthest on average; None when every such start is labelled.

    The earliest segment wins a tie. A labelled start is never returned, so no frame is annotated twice.
    """
    n = len(dist)
    free = np.ones(n, bool) if labeled is None else ~np.asarray(labeled, bool)
    starts = [int(s) for s in segment_starts(n, segment_length) if free[s]]
    if not starts:
        return None
    score = [float(np.mean(dist[s : s + segment_length])) for s in starts]
    return starts[int(np.argmax(score))]


def coverage_segment(latents: np.ndarray, frames: np.ndarray, dist: np.ndarray, segment_length: int,
                     labeled: np.ndarray | None = None) -> int | None:
    """latents: (N, Z) of the whole pool; frames: (T,) one episode's frame ids; dist: (N,) every frame's latent
    distance to the labelled set -> start (index into ``frames``) of the tiling segment (:func:`segment_starts`)
    whose frames, once labelled, lower the pool's summed distance to the labelled set the most; None when every
    start is labelled.

    The gain is the facility-location one, sum over the pool of max(0, dist - distance to the segment): a segment
    in a crowded region nobody labelled yet gains the most, an outlier gains little because few frames are near
    it. Farthest-first picks the outliers first, and at small budgets those teach a regressor least (Hacohen et
    al. 2022, "Active learning on a budget": typical points win at low budgets, coverage of the rest at high).
    The earliest segment wins a tie; a labelled start is never returned.
    """
    n = len(frames)
    free = np.ones(n, bool) if labeled is None else ~np.asarray(labeled, bool)
    starts = [int(s) for s in segment_starts(n, segment_length) if free[s]]
    if not starts:
        return None
    gain = [float(np.maximum(dist - min_distances(latents, latents[frames[s : s + segment_length]]), 0.0).sum())
            for s in starts]
    return starts[int(np.argmax(gain))]


SEGMENT_RULES = ("farthest", "coverage")


def check_segment_rule(segment: str) -> str:
    """``segment`` if it is a diversity segment rule; else a one-sentence ConfigError (both entry points use this)."""
    if segment not in SEGMENT_RULES:
        raise ConfigError(f"The diversity segment rule {segment!r} is unknown; set strategies.diversity.segment to one of {list(SEGMENT_RULES)}.")
    return segment


def diversity_episodes(latents: np.ndarray, episode_of: np.ndarray, labeled: np.ndarray, k: int,
                       segment_length: int, annotated: np.ndarray | None = None, segment: str = "farthest") -> np.ndarray:
    """VAE-latent diversity (Sato et al. 2023): farthest-first episodes, then a segment within.

    ``segment``: which segment of the picked episode is annotated: ``farthest`` (default, :func:`farthest_segment`),
    the one farthest from the labelled set, or ``coverage`` (:func:`coverage_segment`), the one that most lowers the
    whole pool's latent distance to it. Neither wins on both recorded tasks (docs/results/semantics.md,
    semantics_metaworld.md): on planar push the farthest segment is the episode's start, where rollouts begin and the
    puck's initial position is unlike any pushed one, while coverage prefers segments that sweep through the latent
    space (pushing) and never annotates a start; on Meta-World push the farthest segments sit in sparse latent
    regions (median 20-nearest-neighbour distance 0.85 against 0.60 over all frames) and a mapper trained on 50 of
    them errs twice as much on held-out episodes as one trained on random episodes' segments, while coverage's picks
    are as typical as random ones (0.70).

    latents: (N, Z) VAE means of every frame; episode_of: (N,); labeled: (N,) bool; annotated: (A,)
    frame ids annotated so far (None: the episodes holding a labelled frame) -> (≤ k,) frame ids.
    An episode's distance to the labelled set is the mean over its frames of the distance to the
    nearest labelled frame; the farthest episode *not annotated yet* is picked (with nothing labelled:
    the one with the widest spread within itself), and of its tiling segments the one farthest from
    the labelled set is annotated at its first frame; the labelled set then grows by that segment.
    Only once every episode holds an annotation may an episode be picked again.

    Two faults of the earlier rule, both measured on planar push (tools/semantics_diversity_diag.py):
    - episodes were scored by their unlabelled frames and could be picked again, so the episode
      with the most spread-out latents kept winning: 50 annotations fell on 22 of 60 episodes;
    - inside an episode it annotated the segment of widest latent spread. The VAE's latents follow
      the puck (linear R^2 0.9) far more than the small pusher (0.3), so the widest segment is where
      the puck moves: the pushing phase. 0-2 % of the labels fell in the approach phase (21 % of the
      frames), where every closed-loop rollout starts with the pusher far from the puck, and the
      mapper failed there (transfer pusher error 10-37 cm). The farthest segment instead goes to
      what the labels do not cover yet, which early on is the episode's start (the puck still at
      its initial position, unlike every pushed puck labelled so far).
    """
    check_segment_rule(segment)
    labeled = np.asarray(labeled, bool).copy()
    episodes = np.unique(episode_of)
    done = np.unique(episode_of[np.asarray(annotated, int)]) if annotated is not None else np.unique(episode_of[labeled])
    used = np.isin(episodes, done)
    out = []
    for _ in range(int(k)):
        if used.all():  # every episode has an annotation: start over
            used[:] = False
        if labeled.any():
            d = min_distances(latents, latents[labeled])
            score = np.array([d[episode_of == e].mean() for e in episodes])
        else:
            d = min_distances(latents, latents.mean(0, keepdims=True))
            score = np.array([latents[episode_of == e].var(0).sum() for e in episodes])
        score[used] = -np.inf
        start = None
        while start is None and np.isfinite(score).any():
            best = int(np.argmax(score))
            frames = np.flatnonzero(episode_of == episodes[best])
            if segment == "coverage":
                start = coverage_segment(latents, frames, d, segment_length, labeled[frames])
            else:
                start = farthest_segment(d[frames], segment_length, labeled[frames])
            score[best] = -np.inf  # exhausted (every tiling start labelled) if start is None
            used[best] = True
        if start is None:
            break
        frame = int(frames[start])
        out.append(frame)
        labeled[segment_cover(frame, episode_of, segment_length)] = True
    return np.asarray(out, dtype=int)


def picks_in_rounds(select, episode_of: np.ndarray, budget: int, per_round: int, segment_length: int) -> np.ndarray:
    """Replay a selection rule over rounds without a mapper, as the active loop grows its labelled set: each round
    ``select(labeled (N,) bool copy, k, picks so far (A,)) -> new frame ids``, each pick labelling its segment
    (:func:`segment_cover`), until ``budget`` picks or an empty round -> (≤ budget,) frame ids in order."""
    picks: list[int] = []
    labeled = np.zeros(len(episode_of), bool)
    while len(picks) < budget:
        new = select(labeled.copy(), min(per_round, budget - len(picks)), np.asarray(picks, int))
        if len(new) == 0:
            break
        picks += [int(f) for f in new]
        for f in new:
            labeled[segment_cover(int(f), episode_of, segment_length)] = True
    return np.asarray(picks, int)


def ensemble_variance(preds: np.ndarray) -> np.ndarray:
    """preds: (M, N, D) ensemble predictions (normalised units) -> (N,) mean over D of the variance over M."""
    return np.asarray(preds).var(axis=0).mean(axis=-1)


def segment_gains(score: np.ndarray, episode_of: np.ndarray, labeled: np.ndarray, segment_length: int) -> np.ndarray:
    """score: (N,) ≥ 0 per frame; labeled: (N,) bool -> (N,) for each unlabelled frame, the summed score of the
    unlabelled frames its annotation would label (its :func:`segment_cover`); -inf at labelled frames.

    Episodes are contiguous runs of ``episode_of``. Ranking starts by the frame's own score instead let picks overlap:
    after a pick only the frames after it were excluded, so the frames just before a high-scoring one came next, and
    a segment reaching into earlier rounds' labels counted as a full one. On Meta-World push, 50 variance picks
    labelled 292-451 new frames and 50 hybrid picks 588-634, where 50 disjoint segments of 20 label 1,000.
    """
    labeled = np.asarray(labeled, bool)
    episode_of = np.asarray(episode_of)
    n, L = len(labeled), max(1, int(segment_length))
    csum = np.concatenate([[0.0], np.cumsum(np.where(labeled, 0.0, np.asarray(score, np.float64)))])
    idx = np.arange(n)
    run_ends = np.r_[np.flatnonzero(np.diff(episode_of) != 0) + 1, n]
    end = np.minimum(idx + L, run_ends[np.searchsorted(run_ends, idx, side="right")])
    return np.where(labeled, -np.inf, csum[end] - csum[idx])


def top_scores(score: np.ndarray, episode_of: np.ndarray, labeled: np.ndarray, k: int, segment_length: int) -> np.ndarray:
    """Greedy k segment starts of largest :func:`segment_gains` of score (N,) ≥ 0, each pick's segment then labelled
    (so no two picks label the same frame) -> (≤ k,) frame ids."""
    labeled = np.asarray(labeled, bool).copy()
    out = []
    for _ in range(int(k)):
        gain = segment_gains(score, episode_of, labeled, segment_length)
        i = int(np.argmax(gain))
        if not np.isfinite(gain[i]):
            break
        out.append(i)
        labeled[segment_cover(i, episode_of, segment_length)] = True
    return np.asarray(out, dtype=int)


def latent_distance(latents: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    """(N,) each frame's latent distance to the nearest labelled frame; all ones while nothing is labelled."""
    labeled = np.asarray(labeled, bool)
    return min_distances(latents, latents[labeled]) if labeled.any() else np.ones(len(latents))


def pool_rank(values: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    """(N,) each unlabelled frame's rank among the unlabelled frames' ``values``, as a fraction in (0, 1] (ties share
    their mean rank, scipy's rankdata); 0 at labelled frames."""
    from scipy.stats import rankdata

    free = ~np.asarray(labeled, bool)
    out = np.zeros(len(free))
    if free.any():
        out[free] = rankdata(np.asarray(values, np.float64)[free], method="average") / free.sum()
    return out


def hybrid(variance: np.ndarray, latents: np.ndarray, episode_of: np.ndarray, labeled: np.ndarray, k: int,
           segment_length: int, weight: float = 0.5) -> np.ndarray:
    """Uncertainty and diversity: per-frame score (1 - w) · rank of the variance + w · rank of d among the unlabelled
    frames (:func:`pool_rank`), summed over what a pick's segment would newly label (:func:`segment_gains`), greedily.

    variance: (N,); latents: (N, Z); labeled: (N,) bool -> (≤ k,) ids. d is the latent distance to
    the nearest labelled (or already picked) frame (:func:`latent_distance`), updated after each pick with its segment.
    Ranks, not values scaled by their largest: the ensemble variance is heavy-tailed, and scaled by its largest value
    it was 0.002 at the median unlabelled frame and 0.02-0.05 at the 99th percentile, against 0.33 and 0.75 for the
    scaled distance (Meta-World push, after the first 50 annotations, 3 seeds: tools/semantics_picks_diag.py
    --scores), so at w = 0.5 the distance alone chose: two seeds' second rounds annotated the same 100 frames.
    """
    labeled = np.asarray(labeled, bool).copy()
    out = []
    for _ in range(int(k)):
        if labeled.all():
            break
        score = (1 - weight) * pool_rank(variance, labeled) + weight * pool_rank(latent_distance(latents, labeled), labeled)
        i = int(np.argmax(segment_gains(score, episode_of, labeled, segment_length)))
        out.append(i)
        labeled[segment_cover(i, episode_of, segment_length)] = True
    return np.asarray(out, dtype=int)
