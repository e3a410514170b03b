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
