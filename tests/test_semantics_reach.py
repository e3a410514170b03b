"""semantics.data.reach_steps: offline episodes that first reach to a random point of the effector's box, then the expert."""

from types import SimpleNamespace

import numpy as np
import pytest


def test_the_reaching_phase_hands_over_to_the_behaviour_after_its_steps():
    from robopolicy.semantics.tasks import _ReachFirst

    class Box:
        def effector_box(self):
            return np.array([0.0, 0.0]), np.array([1.0, 1.0])

        def reach_action(self, s, target):
            return np.asarray(target, np.float32) - s[:2]

    class Behaviour:
        def reset(self, seed):
            pass

        def act(self, obs, env, t):
            return np.full(2, 9.0, np.float32)

    env = SimpleNamespace(true_semantics=lambda: np.zeros(4, np.float32))
    actor = _ReachFirst(Box(), Behaviour(), steps=2)
    actor.reset(7)
    acts = [actor.act(None, env, t) for t in range(3)]
    np.testing.assert_allclose(acts[0], np.clip(actor.target, -1, 1), atol=1e-6)
    np.testing.assert_array_equal(acts[2], np.full(2, 9.0, np.float32))


def test_a_negative_reaching_phase_is_refused():
    from robopolicy.errors import TaskError
    from robopolicy.semantics.tasks import _reach_first

    with pytest.raises(TaskError, match="reach_steps"):
        _reach_first(None, None, -1)


def test_the_pusher_reaches_its_random_target_on_planar_push():
    from robopolicy.defaults import group_config
    from robopolicy.envs import make_task
    from robopolicy.semantics.tasks import semantics_task

    sem = semantics_task(make_task(group_config("task", "planar_push", {"max_episode_steps": 80})))
    actor, env = sem.behaviour_actor(0.0, reach_steps=70), sem.make_sim()
    actor.reset(4)
    env.reset(seed=4)
    start = np.linalg.norm(env.unwrapped.get_semantics()[:2] - actor.target)
    for t in range(70):  # the pusher moves about 0.9 cm a step
        env.step(actor.act(None, SimpleNamespace(true_semantics=env.unwrapped.get_semantics), t))
    assert np.linalg.norm(env.unwrapped.get_semantics()[:2] - actor.target) < 0.2 * start
    env.close()
