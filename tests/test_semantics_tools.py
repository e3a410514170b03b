"""The semantics diagnosis tools run on a sweep cache: the mapper ceiling (every offline frame labelled) and the
step-by-step error trace (held-out episodes and closed-loop transfer). The cache holds tiny hand-made episodes
at the planar push camera's size, so nothing is collected."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
from _semantics_toys import dot_frames
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.semantics.data import RealEpisodes

TOOLS = Path(__file__).resolve().parents[1] / "tools"
TINY = ["mapper.members=2", "mapper.hidden_dim=8", "mapper.encoder.channels=[4,4]", "mapper.encoder.strides=[2,1]",
        "mapper.encoder.groups=2", "mapper.encoder.num_kp=4", "mapper.encoder.feature_dim=8", "trainer.batch_size=4",
        "trainer.device=cpu", "device=cpu"]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _episodes(n, length, seed):
    """n episodes of 64x64 frames with a dot at the pusher; semantics (pusher x, y, puck x, y) in metres."""
    rng = np.random.default_rng(seed)
    images, actions, truths = [], [], []
    for _ in range(n):
        xy = np.cumsum(rng.uniform(-0.02, 0.02, (length, 2)), 0).clip(-0.1, 0.1).astype(np.float32)
        images.append(dot_frames(xy * 8, 64))
        actions.append(np.zeros((length - 1, 2), np.float32))
        truths.append(np.c_[xy, np.full_like(xy, 0.05)])
    return RealEpisodes(images, actions), truths


def _cached_setting(tmp_path):
    """The overrides of a run whose cache holds 3 offline episodes of 6 frames and 2 held-out ones of 5."""
    from robopolicy.semantics.experiment import _Cache

    overrides = [f"cache_dir={tmp_path / 'cache'}"] + TINY
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=overrides)
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    _Cache(cfg).episodes("offline", lambda: _episodes(3, 6, 0))
    _Cache(cfg).episodes("test", lambda: _episodes(2, 5, 1))
    return overrides


def test_mapper_ceiling_trains_on_every_offline_frame(tmp_path, monkeypatch, capsys):
    overrides = _cached_setting(tmp_path)
    monkeypatch.setattr(sys, "argv", ["semantics_mapper_ceiling.py", "--out", str(tmp_path / "ceil"), "--steps", "2", "--"] + overrides)
    _tool("semantics_mapper_ceiling").main()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "labelled frames" in ln]
    assert lines == ["18 labelled frames, 2 steps, " + lines[0].split(", ")[-1]]


def test_error_trace_reports_each_held_out_and_transfer_episode(tmp_path, monkeypatch, capsys):
    overrides = _cached_setting(tmp_path)
    monkeypatch.setattr(sys, "argv", ["semantics_mapper_ceiling.py", "--out", str(tmp_path / "ceil"), "--steps", "2", "--"] + overrides)
    _tool("semantics_mapper_ceiling").main()
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["semantics_error_trace.py", "--mapper", str(tmp_path / "ceil"), "--episodes", "1",
                                      "--object", "puck", "--effector", "pusher", "--"] + overrides)
    _tool("semantics_error_trace").main()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("held-out", "transfer"))]
    assert [ln.split(":")[0] for ln in lines] == ["held-out episode 0", "held-out episode 1", "transfer seed 20000"]


def test_mapper_ceiling_labels_only_the_asked_segments(tmp_path, monkeypatch, capsys):
    # 3 episodes of 6 frames, segments of 4: 2 segments = 2 episodes x 4 frames.
    overrides = _cached_setting(tmp_path)
    monkeypatch.setattr(sys, "argv", ["semantics_mapper_ceiling.py", "--out", str(tmp_path / "ceil"), "--steps", "2",
                                      "--segments", "2", "--segment-length", "4", "--"] + overrides)
    _tool("semantics_mapper_ceiling").main()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "labelled frames" in ln]
    assert lines[0].startswith("8 labelled frames, ")


def test_mapper_ceiling_segments_one_per_episode_first():
    # 6 segments from 6 episodes: drawn with repeats allowed, all 6 would be distinct only 1.5 % of the time.
    episodes, _ = _episodes(6, 6, 0)
    ids = _tool("semantics_mapper_ceiling").labelled_segments(episodes, 6, 2, np.random.default_rng(0))
    assert sorted(np.unique(episodes.episode_of[ids]).tolist()) == [0, 1, 2, 3, 4, 5]


def test_mapper_ceiling_refuses_more_segments_than_the_data_holds():
    import pytest

    from robopolicy.errors import ConfigError

    episodes, _ = _episodes(3, 6, 0)  # 2 tiling segments of 4 frames per episode: 6 in all
    with pytest.raises(ConfigError, match="more than the 6 segments"):
        _tool("semantics_mapper_ceiling").labelled_segments(episodes, 7, 4, np.random.default_rng(0))


def _pushes(gap):
    """2 planar-push episodes of the noisy expert through the real camera's look at 32 px, with the dynamics ``gap``."""
    from robopolicy.defaults import constructor_kwargs, group_config
    from robopolicy.envs import make_task
    from robopolicy.semantics.data import collect_real_episodes

    look = constructor_kwargs(group_config("semantics/real_env", "same_dynamics", {"image_size": 32, **gap}))
    task = make_task(group_config("task", "planar_push", {"max_episode_steps": 40}))
    return collect_real_episodes(task, look, episodes=2, seed=0, behaviour_noise=0.3, reach_steps=0)


def _label_error(gap):
    from robopolicy.defaults import group_config
    from robopolicy.envs import make_task
    from robopolicy.semantics.tasks import semantics_task

    data, truths = _pushes(gap)
    sem = semantics_task(make_task(group_config("task", "planar_push", {"max_episode_steps": 40})))
    sim = sem.make_sim()
    sim.reset(seed=0)
    rows = _tool("semantics_label_error").label_error_rows(
        sem, data, np.concatenate(truths), np.array([0, data.frame_id(1, 0)]), sim, 30, {"from rest": (None, None, None)},
        ["puck"], 0.02)
    sim.close()
    return rows[0]


def test_label_error_is_zero_where_the_simulator_is_the_robot():
    row = _label_error({"mass_scale": 1.0, "friction_scale": 1.0})
    assert (row["augmented"], row["puck"]["mean_cm"]) == (58, 0.0)


def test_label_error_shows_a_dynamics_gap():
    row = _label_error({"mass_scale": 2.0, "friction_scale": 3.0})
    assert row["puck"]["mean_cm"] > 0.0  # exactly 0 with the simulator's dynamics (the test above)


def test_label_error_tool_reports_each_setting(tmp_path, monkeypatch, capsys):
    from robopolicy.semantics.experiment import _Cache

    overrides = [f"cache_dir={tmp_path / 'cache'}", "real_env.image_size=32", "task.max_episode_steps=40"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.create(OmegaConf.to_container(compose("semantics", overrides=overrides), resolve=True))
    data, _ = _Cache(cfg).episodes("offline", lambda: _pushes({}))
    labels = tmp_path / "labels.npz"
    np.savez(labels, labels=np.zeros((data.n_frames, 4), np.float32), age=np.zeros(data.n_frames, int), annotated=np.array([0, 5]))
    monkeypatch.setattr(sys, "argv", ["semantics_label_error.py", "--labels", str(labels), "--gate-samples", "2", "--real-dynamics",
                                      "--"] + overrides)
    _tool("semantics_label_error").main()
    rows = [ln.split("augmented")[0].strip() for ln in capsys.readouterr().out.splitlines() if "augmented" in ln]
    # planar push's state is its semantics: nothing to follow
    assert rows == ["from rest", "from rest + dynamics gate", "from rest, real object dynamics"]


def test_label_error_in_the_real_dynamics_is_zero_and_the_simulator_is_restored():
    from robopolicy.defaults import group_config
    from robopolicy.envs import make_task
    from robopolicy.semantics.tasks import semantics_task

    data, truths = _pushes({"mass_scale": 2.0, "friction_scale": 3.0})
    sem = semantics_task(make_task(group_config("task", "planar_push", {"max_episode_steps": 40})))
    sim = sem.make_sim()
    sim.reset(seed=0)
    mass = sim.unwrapped.model.body_mass.copy()
    rows = _tool("semantics_label_error").label_error_rows(
        sem, data, np.concatenate(truths), np.array([0, data.frame_id(1, 0)]), sim, 30,
        {"real": (None, None, (sem.object_dynamics(sim, {}), 2.0, 3.0))}, ["puck"], 0.02)
    assert rows[0]["puck"]["mean_cm"] == 0.0
    np.testing.assert_array_equal(sim.unwrapped.model.body_mass, mass)
    sim.close()


def test_picks_diag_knn_distance_excludes_the_frame_itself():
    diag = _tool("semantics_picks_diag")
    latents = np.array([[0.0], [1.0], [3.0]])
    got = diag.knn_distance(latents, sample=3, k=1)
    np.testing.assert_allclose(got, [1.0, 1.0, 2.0])


def test_picks_diag_describes_where_the_annotations_fall():
    diag = _tool("semantics_picks_diag")
    episode_of = np.repeat([0, 1], 10)
    t_of = np.tile(np.arange(10), 2)
    knn = np.r_[np.zeros(5), np.ones(15)]
    d = diag.describe(np.array([0, 15]), episode_of, t_of, knn, segment_length=5)
    assert (d["episodes"], d["t_median"], d["start_share"], d["knn_labelled"]) == (2, 2.5, 0.5, 0.5)


def test_picks_diag_counts_the_annotations_another_set_shares():
    diag = _tool("semantics_picks_diag")
    episode_of, t_of, knn = np.zeros(20, int), np.arange(20), np.zeros(20)
    d = diag.describe(np.array([0, 5, 10]), episode_of, t_of, knn, segment_length=5, reference=np.array([5, 10, 15]))
    assert d["shared"] == 2


def test_picks_diag_term_quantiles_read_only_the_candidates():
    diag = _tool("semantics_picks_diag")
    values = np.r_[np.full(10, 100.0), np.arange(11.0)]
    assert diag.term_quantiles(values, np.r_[np.zeros(10, bool), np.ones(11, bool)], qs=(50, 100)) == [0.5, 1.0]


def test_mapper_ceiling_writes_its_figures_with_the_runs_proprio_split(tmp_path, monkeypatch):
    import json

    overrides = _cached_setting(tmp_path) + ["proprio_semantics=[pusher_x,pusher_y]"]
    monkeypatch.setattr(sys, "argv", ["semantics_mapper_ceiling.py", "--out", str(tmp_path / "ceil"), "--steps", "2", "--"] + overrides)
    _tool("semantics_mapper_ceiling").main()
    got = json.loads((tmp_path / "ceil" / "ceiling.json").read_text())
    assert (got["labelled_frames"], got["proprio"], got["offline_pusher_error_m"]) == (18, ["pusher_x", "pusher_y"], 0.0)


def test_picks_diag_member_view_predicts_one_member_in_metres():
    class Fake:
        semantics_names = ("puck_x",)

        def predict(self, images, reading=None):
            sub = np.array([[[0.1]], [[0.3]]], np.float32)  # (M=2, N=1, D=1) normalised
            return sub.mean(0) * 2, sub

        def unnormalize(self, z):
            return z * 2

    got, _ = _tool("semantics_picks_diag").MemberView(Fake(), 1).predict(np.zeros((1, 1, 2, 2, 3), np.uint8))
    np.testing.assert_allclose(got, [[0.6]], rtol=1e-6)
