"""Acquisition functions on tiny hand-made cases."""

import numpy as np
import pytest

from robopolicy.semantics import acquisition as acq


def test_segment_cover_stays_in_episode():
    episode_of = np.array([0, 0, 0, 1, 1])
    np.testing.assert_array_equal(acq.segment_cover(1, episode_of, 4), [1, 2])
    np.testing.assert_array_equal(acq.segment_cover(3, episode_of, 1), [3])


def test_random_frames_distinct_and_from_candidates():
    rng = np.random.default_rng(0)
    cand = np.array([2, 5, 7, 9])
    got = acq.random_frames(cand, 3, rng)
    assert len(set(got)) == 3 and set(got) <= set(cand)
    assert len(acq.random_frames(cand, 10, rng)) == 4


def test_random_episodes_prefers_new_episodes_and_fitting_starts():
    episode_of = np.repeat([0, 1, 2], 5)
    t_of = np.tile(np.arange(5), 3)
    got = acq.random_episodes(episode_of, t_of, np.array([0, 2]), 1, segment_length=4, rng=np.random.default_rng(0))
    assert episode_of[got[0]] == 1 and t_of[got[0]] in (0, 1)


def test_random_episodes_label_the_first_frames_as_often_as_the_rest():
    # One episode of 96 frames, segments of 20: the first frame must be labelled about as often as a
    # middle one (a start uniform among fitting starts labelled frame 0 only from start 0: 1 in 77).
    episode_of, t_of = np.zeros(96, int), np.arange(96)
    rng = np.random.default_rng(0)
    cover = np.zeros(96)
    for _ in range(2000):
        f = acq.random_episodes(episode_of, t_of, np.zeros(0, int), 1, 20, rng)[0]
        cover[acq.segment_cover(f, episode_of, 20)] += 1
    assert cover.min() > 0.15 * 2000 and cover[0] > 0.5 * cover[48]
    for n in (5, 19, 20, 96, 101):
        starts = acq.segment_starts(n, 20)
        assert starts[0] == 0 and starts[-1] == max(0, n - 20)
        assert all(sum(s <= t < s + 20 for s in starts) >= 1 for t in range(n))


def test_diversity_picks_the_far_cluster_first():
    # Episodes 0 and 1 sit near the origin (episode 0 labelled), episode 2 far away.
    latents = np.array([[0, 0], [0.1, 0], [0.2, 0], [0, 0.5], [0.1, 0.5], [0.2, 0.5], [5, 5], [5, 5.1], [5, 5.4]], float)
    episode_of = np.repeat([0, 1, 2], 3)
    labeled = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    got = acq.diversity_episodes(latents, episode_of, labeled, k=2, segment_length=2)
    assert episode_of[got[0]] == 2
    # Within episode 2 the widest segment of length 2 is frames 7-8 ((5, 5.1) -> (5, 5.4)).
    assert got[0] == 7
    # Then the farthest remaining episode: episode 1 (0.5 away), not frame 6 (0.1 from frame 7).
    assert episode_of[got[1]] == 1


def test_diversity_never_annotates_a_labelled_frame_twice():
    # One far episode that stays the farthest after its widest segment is labelled: the next picks
    # in it must start on unlabelled frames, and an exhausted episode is skipped.
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(0, 0.1, (10, 2)), rng.normal(0, 0.1, (10, 2)), 5 + rng.normal(0, 1.0, (10, 2))])
    episode_of = np.repeat([0, 1, 2], 10)
    labeled = np.zeros(30, bool)
    labeled[0] = True
    got = acq.diversity_episodes(latents, episode_of, labeled, k=12, segment_length=3)
    assert len(got) == len(set(got.tolist())) and not labeled[got].any()
    covered = labeled.copy()
    for f in got:  # each pick starts outside every segment picked before it
        assert not covered[f]
        covered[acq.segment_cover(int(f), episode_of, 3)] = True
    assert episode_of[got[0]] == 2


def test_diversity_annotates_every_episode_before_returning_to_one():
    # The failure seen on planar push: one episode whose latents are spread out stays the farthest
    # after its widest segment is labelled, and the old rule kept annotating it (50 annotations on
    # 22 of 60 episodes). Episodes are picked farthest-first, each once until all have an annotation.
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(0, 0.1, (10, 2)), rng.normal(0, 0.1, (10, 2)) + [0.5, 0], 5 + rng.normal(0, 1.0, (10, 2))])
    episode_of = np.repeat([0, 1, 2], 10)
    got = acq.diversity_episodes(latents, episode_of, np.zeros(30, bool), k=3, segment_length=3)
    assert sorted(episode_of[got].tolist()) == [0, 1, 2]


def test_diversity_skips_episodes_annotated_in_earlier_rounds():
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(0, 0.1, (10, 2)), rng.normal(0, 0.1, (10, 2)) + [0.5, 0], 5 + rng.normal(0, 1.0, (10, 2))])
    episode_of = np.repeat([0, 1, 2], 10)
    labeled = np.zeros(30, bool)
    labeled[20:23] = True  # round 1 annotated frame 20 of the far episode
    got = acq.diversity_episodes(latents, episode_of, labeled, k=2, segment_length=3, annotated=np.array([20]))
    assert sorted(episode_of[got].tolist()) == [0, 1]


def test_diversity_annotates_the_uncovered_start_not_the_moving_phase():
    # The other failure seen on planar push: the latents follow the puck, which is still during the
    # approach and moves while pushed. The widest-spread segment was always a pushing one, so the
    # approach (where a rollout starts) was never labelled. Here episode 1's pushing phase is labelled;
    # episode 0 starts still at (3, 0), far from every label, then moves along the labelled line.
    still = np.tile([3.0, 0.0], (10, 1))
    moving = np.c_[np.linspace(0, 1, 10), np.zeros(10)]
    latents = np.concatenate([still, moving, np.c_[np.linspace(0, 1, 20), np.zeros(20)]])
    episode_of = np.repeat([0, 1], 20)
    labeled = np.zeros(40, bool)
    labeled[20:40] = True
    got = acq.diversity_episodes(latents, episode_of, labeled, k=1, segment_length=5, annotated=np.array([20]))
    assert got.tolist() == [0]


def test_farthest_segment_uses_tiling_starts_and_skips_labelled_ones():
    dist = np.array([0.0, 0.0, 0.0, 0.0, 5.0, 5.0, 0.0, 0.0])
    assert acq.farthest_segment(dist, 4) == 4  # tiling starts 0 and 4
    assert acq.farthest_segment(dist, 4, labeled=np.array([0, 0, 0, 0, 1, 1, 1, 1], bool)) == 0
    assert acq.farthest_segment(dist, 4, labeled=np.array([1, 0, 0, 0, 1, 0, 0, 0], bool)) is None


def test_variance_picks_the_disputed_point():
    # 3 members agree on frames 0, 2, 3 and disagree on frame 1.
    preds = np.zeros((3, 4, 2))
    preds[:, 1, 0] = [-1.0, 0.0, 1.0]
    preds[:, 3, 1] = [0.1, 0.0, -0.1]
    var = acq.ensemble_variance(preds)
    assert var.shape == (4,) and np.argmax(var) == 1
    episode_of = np.array([0, 0, 1, 1])
    got = acq.top_scores(var, episode_of, labeled=np.zeros(4, bool), k=2, segment_length=1)
    # Frame 1 is covered; the next pick is the mildly disputed frame 3.
    np.testing.assert_array_equal(got, [1, 3])
    # A labelled frame is never picked again.
    assert acq.top_scores(var, episode_of, np.array([0, 1, 0, 0], bool), 1, 1)[0] == 3


def _peaked(n, at, width=3.0):
    return np.exp(-0.5 * ((np.arange(n) - at) / width) ** 2)


def test_segment_gains_sum_what_a_segment_newly_labels_within_its_episode():
    score = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    episode_of = np.array([0, 0, 0, 1, 1, 1])
    labeled = np.array([0, 1, 0, 0, 0, 0], bool)
    gains = acq.segment_gains(score, episode_of, labeled, segment_length=5)
    # Frame 0's segment stops at its episode's end and skips the labelled frame 1; frame 3's runs to episode 1's end.
    np.testing.assert_array_equal(gains, [5.0, -np.inf, 4.0, 56.0, 48.0, 32.0])


def test_variance_picks_label_disjoint_segments():
    # One episode, uncertainty peaked at frame 15, segments of 5. Ranking starts by their own score took 15, 14, 13:
    # three annotations labelling 7 frames.
    episode_of = np.zeros(30, int)
    picks = acq.top_scores(_peaked(30, 15), episode_of, np.zeros(30, bool), k=3, segment_length=5)
    covered = np.concatenate([acq.segment_cover(int(p), episode_of, 5) for p in picks])
    assert len(np.unique(covered)) == 15


def test_variance_pick_avoids_segments_reaching_earlier_labels():
    # Frames 10-14 were labelled in an earlier round; the most uncertain unlabelled frame (9) sits just before them.
    episode_of = np.zeros(30, int)
    labeled = np.zeros(30, bool)
    labeled[10:15] = True
    pick = acq.top_scores(_peaked(30, 12), episode_of, labeled, k=1, segment_length=5)[0]
    assert not labeled[acq.segment_cover(int(pick), episode_of, 5)].any()


def test_hybrid_picks_label_disjoint_segments():
    episode_of = np.zeros(30, int)
    latents = np.c_[np.linspace(0.0, 1.0, 30)]
    labeled = np.zeros(30, bool)
    labeled[0] = True
    picks = acq.hybrid(_peaked(30, 15), latents, episode_of, labeled, k=3, segment_length=5, weight=0.5)
    covered = np.concatenate([acq.segment_cover(int(p), episode_of, 5) for p in picks])
    assert len(np.unique(covered)) == 15


def test_pool_rank_ranks_the_unlabelled_frames_only():
    labeled = np.array([1, 0, 0, 0, 0], bool)
    np.testing.assert_allclose(acq.pool_rank(np.array([99.0, 0.1, 5.0, 0.2, 0.2]), labeled), [0.0, 0.25, 1.0, 0.625, 0.625])


def test_hybrid_weighs_a_heavy_tailed_variance_against_the_distance():
    # Episode 0 is labelled. Episode 1 (near it) has one frame of huge variance, episode 2 (fairly far) a moderate
    # variance on every frame, episode 3 (farthest) none. Scaled by its largest value the moderate variances vanish and
    # the distance alone picked episode 3; by rank, episode 2, high on both, wins.
    episode_of = np.repeat([0, 1, 2, 3], 4)
    latents = np.r_[np.zeros(4), np.full(4, 0.1), np.linspace(0.6, 0.7, 4), np.linspace(0.9, 1.0, 4)][:, None]
    variance = np.r_[np.zeros(4), [1000.0, 0, 0, 0], [0.5, 0.6, 0.7, 0.8], np.zeros(4)]
    labeled = episode_of == 0
    assert acq.hybrid(variance, latents, episode_of, labeled, 1, 4, weight=0.5)[0] == 8


def test_hybrid_trades_uncertainty_for_diversity():
    latents = np.array([[0.0], [0.1], [10.0], [0.2]])
    variance = np.array([0.0, 1.0, 0.2, 0.0])
    episode_of = np.arange(4)
    labeled = np.array([1, 0, 0, 0], bool)
    assert acq.hybrid(variance, latents, episode_of, labeled, 1, 1, weight=0.0)[0] == 1  # pure uncertainty
    assert acq.hybrid(variance, latents, episode_of, labeled, 1, 1, weight=1.0)[0] == 2  # pure diversity
    # A frame that is both far and somewhat uncertain beats a near, very uncertain one at w = 0.5.
    assert acq.hybrid(variance, latents, episode_of, labeled, 1, 1, weight=0.5)[0] == 2
    # Greedy: after the far frame the disputed one comes next.
    np.testing.assert_array_equal(acq.hybrid(variance, latents, episode_of, labeled, 2, 1, weight=0.5), [2, 1])


def _outlier_and_crowd():
    # Episode 0: its first segment lies in a crowd of unlabelled frames (episode 2, 40 frames near (1, 0)), its
    # second segment alone at (4, 0). Episode 1, at the origin, is labelled. Episode 0 is the farthest episode.
    rng = np.random.default_rng(0)
    latents = np.concatenate([np.tile([1.0, 0.0], (5, 1)), np.tile([4.0, 0.0], (5, 1)), np.zeros((10, 2)),
                              [1.0, 0.0] + rng.normal(0, 0.05, (40, 2))])
    episode_of = np.repeat([0, 0, 1, 2], [5, 5, 10, 40])
    labeled = episode_of == 1
    return latents, episode_of, labeled


def test_diversity_coverage_annotates_the_crowded_segment_not_the_outlier():
    # The failure seen on Meta-World push: the farthest segment of each episode sat in a sparse latent region, and
    # a mapper trained on 50 of them erred twice as much on held-out episodes as one trained on random segments.
    latents, episode_of, labeled = _outlier_and_crowd()
    got = acq.diversity_episodes(latents, episode_of, labeled, k=1, segment_length=5, annotated=np.array([10]),
                                 segment="coverage")
    assert got.tolist() == [0]


def test_diversity_farthest_rule_annotates_the_outlier():
    latents, episode_of, labeled = _outlier_and_crowd()
    got = acq.diversity_episodes(latents, episode_of, labeled, k=1, segment_length=5, annotated=np.array([10]))
    assert got.tolist() == [5]


def test_diversity_rejects_an_unknown_segment_rule():
    from robopolicy.errors import ConfigError
    from robopolicy.semantics.strategies import Diversity

    with pytest.raises(ConfigError, match="strategies.diversity.segment"):
        Diversity(segment="widest")


def test_diversity_segment_rule_comes_from_the_config():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from robopolicy.cli._hydra import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=["strategies.diversity.segment=coverage"])
    assert instantiate(cfg.strategies.diversity).segment == "coverage"
    assert instantiate(cfg.strategies.hybrid).first_round.segment == "coverage"


def _arm_and_object():
    # Three episodes of 10 frames; latent 0 follows the arm (what the robot reads), latent 1 the object. Episode 1 has
    # the widest arm swing, episode 2 the object far from the others. Episode 0 is labelled.
    arm = np.r_[np.linspace(-1, 1, 10), np.linspace(-8, 8, 10), np.linspace(-1, 1, 10)]
    obj = np.r_[np.zeros(10), np.zeros(10), np.full(10, 1.5)]
    episode_of = np.repeat([0, 1, 2], 10)
    return np.c_[arm, obj], arm[:, None], episode_of, episode_of == 0


def test_minus_reading_leaves_what_the_reading_does_not_explain():
    latents, reading, _, _ = _arm_and_object()
    got = acq.minus_reading(latents, reading)
    np.testing.assert_allclose(got[:, 0], 0, atol=1e-5)
    np.testing.assert_allclose(got[:, 1], latents[:, 1] - latents[:, 1].mean(), atol=1e-5)


def test_farthest_first_on_raw_latents_annotates_the_arm_swing():
    latents, _, episode_of, labeled = _arm_and_object()
    got = acq.diversity_episodes(latents, episode_of, labeled, k=1, segment_length=5, annotated=np.array([0]))
    assert episode_of[got].tolist() == [1]


def test_farthest_first_minus_the_reading_annotates_the_unseen_object():
    latents, reading, episode_of, labeled = _arm_and_object()
    got = acq.diversity_episodes(acq.minus_reading(latents, reading), episode_of, labeled, k=1, segment_length=5,
                                 annotated=np.array([0]))
    assert episode_of[got].tolist() == [2]


def _episodes(proprio):
    from robopolicy.semantics.data import RealEpisodes

    images = [np.zeros((10, 8, 8, 3), np.uint8) for _ in range(3)]
    return RealEpisodes(images, [np.zeros((9, 2), np.float32)] * 3, proprio=proprio)


def test_selection_latents_subtract_the_reading_when_the_robot_reads_semantics():
    from omegaconf import OmegaConf

    from robopolicy.semantics.experiment import selection_latents

    latents, reading, _, _ = _arm_and_object()
    cfg = OmegaConf.create({"proprio_semantics": ["pusher_x"], "latents_minus_reading": True})
    got = selection_latents(cfg, latents, _episodes([reading[i * 10:(i + 1) * 10] for i in range(3)]))
    np.testing.assert_allclose(got, acq.minus_reading(latents, reading), atol=1e-5)


def test_selection_latents_are_the_vaes_without_proprio_semantics():
    from omegaconf import OmegaConf

    from robopolicy.semantics.experiment import selection_latents

    latents, _, _, _ = _arm_and_object()
    cfg = OmegaConf.create({"proprio_semantics": [], "latents_minus_reading": True})
    assert selection_latents(cfg, latents, _episodes(None)) is latents


def test_selection_latents_without_readings_is_a_config_error():
    from omegaconf import OmegaConf

    from robopolicy.errors import ConfigError
    from robopolicy.semantics.experiment import selection_latents

    latents, _, _, _ = _arm_and_object()
    cfg = OmegaConf.create({"proprio_semantics": ["pusher_x"], "latents_minus_reading": True})
    with pytest.raises(ConfigError, match="latents_minus_reading"):
        selection_latents(cfg, latents, _episodes(None))


def test_picks_in_rounds_stops_at_the_budget_and_passes_the_growing_labelled_set():
    episode_of = np.repeat([0, 1, 2], 10)
    seen = []

    def select(labeled, k, picks):
        seen.append(int(labeled.sum()))
        return np.flatnonzero(~labeled)[:1]

    got = acq.picks_in_rounds(select, episode_of, budget=3, per_round=1, segment_length=5)
    assert (got.tolist(), seen) == ([0, 5, 10], [0, 5, 10])


def test_diversity_episodes_rejects_an_unknown_segment_rule():
    from robopolicy.errors import ConfigError

    latents, episode_of = np.zeros((4, 2), np.float32), np.array([0, 0, 1, 1])
    with pytest.raises(ConfigError, match="strategies.diversity.segment"):
        acq.diversity_episodes(latents, episode_of, np.zeros(4, bool), 1, 2, segment="widest")
