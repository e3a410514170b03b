"""Transfer evaluation shows its progress: a bar over the episodes with the successes so far."""

from robopolicy.defaults import constructor_kwargs, group_config


def _transfer(progress: bool):
    from robopolicy.envs import make_task
    from robopolicy.semantics.transfer import ExpertController, evaluate_transfer

    task = make_task(group_config("task", "planar_push", {"max_episode_steps": 4}))
    real = constructor_kwargs(group_config("semantics/real_env", "same_dynamics", {"image_size": 16}))
    return evaluate_transfer(None, ExpertController(task), task, real, episodes=2, seed=3, progress=progress)


def test_transfer_progress_bar_counts_episodes_and_successes(capsys):
    out = _transfer(progress=True)
    err = capsys.readouterr().err
    assert f"success {sum(out['successes'])}/2" in err


def test_transfer_without_progress_prints_nothing(capsys):
    _transfer(progress=False)
    assert capsys.readouterr().err == ""
