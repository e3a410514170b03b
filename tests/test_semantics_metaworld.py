"""Image-to-semantics on Meta-World push-v3: semantics, setting the simulator, the real env's gap, the CLI end to end."""

from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from robopolicy.cli._hydra import CONF_DIR

pytest.importorskip("metaworld")


@pytest.fixture(scope="module")
def sem():
    from robopolicy.defaults import group_config
    from robopolicy.envs import make_task
    from robopolicy.semantics.tasks import semantics_task

    return semantics_task(make_task(group_config("task", "metaworld", {"env_name": "push-v3", "max_episode_steps": 30})))


def _expert_rollout(sem, steps, seed=3):
    env = sem.task.make_env(render=False)
    env.reset(seed=seed)
    traj, acts = [env.get_semantics()], []
    for _ in range(steps):
        acts.append(sem.expert_action(traj[-1], None))
        env.step(acts[-1])
        traj.append(env.get_semantics())
    env.close()
    return np.stack(traj), np.stack(acts)


def test_semantics_are_the_state_entries_the_expert_reads(sem):
    from robopolicy.envs.metaworld import semantics_from_state, state_from_semantics

    env = sem.task.make_env(render=False)
    env.reset(seed=1)
    s = env.get_semantics()
    np.testing.assert_allclose(s, semantics_from_state(env.privileged_state()), atol=1e-6)
    np.testing.assert_array_equal(semantics_from_state(state_from_semantics(s)), s)
    env.close()


def test_set_semantics_puts_hand_gripper_object_and_goal_there(sem):
    traj, _ = _expert_rollout(sem, 25)
    sim = sem.make_sim()
    sim.reset(seed=11)  # another episode: other object, goal and hand
    sim.set_semantics(traj[25])
    got = sim.get_semantics()
    assert np.linalg.norm(got[0:3] - traj[25][0:3]) < 2e-3   # hand
    assert abs(got[3] - traj[25][3]) < 0.02                  # gripper opening
    np.testing.assert_allclose(got[4:10], traj[25][4:10], atol=1e-5)  # object, goal
    sim.close()


# The simulator's own look and physics through one small camera (conf/semantics/real_env/metaworld.yaml has the real gap).
NO_GAP = {"image_size": 32, "camera": "corner3", "rotate_180": True, "geom_rgba": None, "material_rgba": None,
          "light_diffuse_scale": 1.0, "light_dir": None, "camera_shift_m": [0.0, 0.0, 0.0], "camera_jitter_m": 0.0,
          "camera_lookat": None, "pixel_noise_std": 0.0, "object_body": "obj", "object_geom": "objGeom", "mass_scale": 1.0,
          "friction_scale": 1.0}


def test_real_env_hides_the_state_and_differs_in_look(sem):
    env = sem.make_real_env(**NO_GAP)
    look = sem.make_real_env(**{**NO_GAP, "geom_rgba": {"objGeom": [0, 0, 1, 1]}, "material_rgba": {"table_wood": [0.5, 0.9, 1, 1]},
                                "light_diffuse_scale": 0.5})
    a, _ = env.reset(seed=2)
    b, _ = look.reset(seed=2)
    assert set(a) == {"image", "agent_pos"}  # the camera and the robot's own reading, no privileged state
    assert a["image"].shape == (32, 32, 3)
    np.testing.assert_array_equal(env.true_semantics(), look.true_semantics())  # same seed, same episode
    assert np.abs(a["image"].astype(int) - b["image"].astype(int)).mean() > 2.0
    env.close()
    look.close()


def test_camera_lookat_puts_the_point_on_the_optical_axis_with_the_table_level(sem):
    import mujoco

    target = np.array([0.05, 0.7, 0.02])
    env = sem.make_real_env(**{**NO_GAP, "camera": "topview", "rotate_180": False, "camera_shift_m": [0.1, 0.6, -0.9],
                               "camera_lookat": target.tolist()})
    env.reset(seed=2)
    m, d = env.sawyer.model, env.sawyer.data
    cam = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, "topview")
    frame = d.cam_xmat[cam].reshape(3, 3)  # columns: the camera's x (right), y (up), z (back) in world coordinates
    to_target = (target - d.cam_xpos[cam]) / np.linalg.norm(target - d.cam_xpos[cam])
    np.testing.assert_allclose(-frame[:, 2], to_target, atol=1e-6)  # MuJoCo cameras look along their -z
    assert abs(frame[2, 0]) < 1e-6  # no roll: the picture's horizontal stays level with the table
    env.close()


def test_camera_lookat_refuses_a_camera_that_moves_with_a_body(sem):
    from robopolicy.errors import ConfigError

    with pytest.raises(ConfigError, match="fixed in the world"):
        sem.make_real_env(**{**NO_GAP, "camera": "behindGripper", "camera_lookat": [0.0, 0.7, 0.0]})


@pytest.mark.parametrize("setting", ["mass_scale", "friction_scale", "pixel_noise_std", "camera_jitter_m", "light_diffuse_scale"])
def test_a_negative_gap_setting_is_refused_by_name(sem, setting):
    from robopolicy.errors import ConfigError

    with pytest.raises(ConfigError, match=setting):
        sem.make_real_env(**{**NO_GAP, setting: -1.0})


def test_real_env_reading_is_the_true_hand_and_gripper(sem):
    env = sem.make_real_env(**NO_GAP)
    env.reset(seed=2)
    obs, *_ = env.step(np.array([0.3, -0.2, 0.1, 0.5], np.float32))
    np.testing.assert_array_equal(obs["agent_pos"], env.true_semantics()[[sem.names.index(n) for n in sem.proprio_names]])
    env.close()


def test_semantics_cli_runs_on_metaworld(tmp_path):
    import json

    from robopolicy.semantics.experiment import main_modes

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=[
            "task=metaworld", "task.env_name=push-v3", "task.max_episode_steps=12", f"run_dir={tmp_path}",
            "run_strategies=[random_episodes]", "budget=3", "per_round=3", "segment_length=3", "data.episodes=2",
            "data.test_episodes=1", "transfer.episodes=1", "real_env.image_size=24", "mapper.members=2",
            "train_schedule.steps=2", "trainer.batch_size=4", "device=cpu"])
    out = main_modes(cfg)
    rec = out["curves"]["random_episodes"][-1]
    assert rec["annotations"] == 3
    assert rec["labeled_frames"] > 3  # pair augmentation labelled frames beyond the annotated ones
    assert {"hand_error_m", "object_error_m", "goal_error_m", "gripper_error"} <= set(rec)
    assert json.loads((tmp_path / "results.json").read_text())["budget"] == 3


def test_expert_on_semantics_acts_as_on_the_full_state(sem):
    from robopolicy.envs.metaworld import MetaWorldExpert, semantics_from_state

    env = sem.task.make_env(render=False)
    env.reset(seed=5)
    full = MetaWorldExpert("push-v3")
    for _ in range(20):
        state = env.privileged_state()
        a = full.act({"state": state}, env)
        np.testing.assert_allclose(sem.expert_action(semantics_from_state(state), None), a, atol=1e-5)
        env.step(a)
    env.close()


def test_the_reaching_phase_takes_the_hand_to_its_random_target_before_the_expert(sem):
    actor = sem.behaviour_actor(0.0, reach_steps=25)
    env = sem.make_sim()
    actor.reset(5)
    env.reset(seed=5)
    start = np.linalg.norm(env.get_semantics()[:3] - actor.target)
    for t in range(25):
        env.step(actor.act(None, SimpleNamespace(true_semantics=env.get_semantics), t))
    assert np.linalg.norm(env.get_semantics()[:3] - actor.target) < 0.2 * start
    env.close()


@pytest.fixture(scope="module")
def recorded(sem):
    """One offline episode in the simulator's own physics (no gap): 10 reaching steps, then the noisy expert."""
    from robopolicy.semantics.data import collect_real_episodes

    return collect_real_episodes(sem, NO_GAP, episodes=1, seed=0, behaviour_noise=0.3, reach_steps=10, max_steps=30)


def test_robot_motion_puts_the_mocap_target_where_the_actions_did(sem, recorded):
    data, truths = recorded
    t = 14
    real = sem.make_sim()
    real.reset(seed=0)  # the recorded episode's seed (episode 0 of seed block 0)
    for a in data.actions[0][:t]:
        real.step(a)
    mw = real.unwrapped.sawyer
    target = mw.data.mocap_pos.copy()
    sim = sem.make_sim()
    sim.reset(seed=7)  # another episode
    sim.set_semantics(truths[0][t])
    assert np.abs(sim.unwrapped.sawyer.data.mocap_pos - target).max() > 1e-3  # set_semantics alone: the target on the hand
    sim.unwrapped.set_robot_motion(data.actions[0][:t], data.proprio[0][t - 1, :3])
    np.testing.assert_allclose(sim.unwrapped.sawyer.data.mocap_pos, target, atol=1e-9)
    real.close()
    sim.close()


def test_robot_motion_gives_the_hand_its_recorded_speed(sem, recorded):
    data, truths = recorded
    t = 14
    sim = sem.make_sim()
    sim.reset(seed=7)
    sim.set_semantics(truths[0][t])
    mw = sim.unwrapped.sawyer
    sim.unwrapped.set_robot_motion(data.actions[0][:t], data.proprio[0][t - 1, :3])
    dt = mw.model.opt.timestep * mw.frame_skip
    recorded_speed = (truths[0][t, :3] - data.proprio[0][t - 1, :3]) / dt
    assert np.linalg.norm(recorded_speed) > 0.05  # the hand is moving at this frame
    import mujoco

    vel = np.zeros(6)  # (angular, linear) of the hand's frame, in world coordinates
    mujoco.mj_objectVelocity(mw.model, mw.data, mujoco.mjtObj.mjOBJ_BODY, mw.data.body("hand").id, vel, 0)
    np.testing.assert_allclose(vel[3:], recorded_speed, atol=0.02)
    sim.close()


def _augmented_hand_error(sem, recorded, follow):
    from robopolicy.semantics.augment import LabelSet

    data, truths = recorded
    sim = sem.make_sim()
    sim.reset(seed=7)
    labels = LabelSet(data, sem.dim)
    ids = labels.add(data.frame_id(0, 8), truths[0][8], sim, segment_length=15, follow=follow)
    sim.close()
    return np.linalg.norm(labels.labels[ids][:, :3] - truths[0][8:23, :3], axis=1).max()


def test_following_the_reading_keeps_the_replayed_hand_on_the_record(sem, recorded):
    plain = _augmented_hand_error(sem, recorded, None)
    followed = _augmented_hand_error(sem, recorded, sem.follow_reading)
    assert plain > 0.01  # from rest, with the target on the hand, the replay falls behind the recorded hand
    assert followed < plain / 3


def test_following_the_reading_needs_the_readings(sem, recorded):
    from robopolicy.errors import ConfigError
    from robopolicy.semantics.augment import LabelSet
    from robopolicy.semantics.data import RealEpisodes

    data, truths = recorded
    bare = RealEpisodes(data.images, data.actions, proprio=None)
    sim = sem.make_sim()
    sim.reset(seed=7)
    with pytest.raises(ConfigError, match="reading with every offline frame"):
        LabelSet(bare, sem.dim).add(0, truths[0][0], sim, segment_length=5, follow=sem.follow_reading)
    sim.close()
