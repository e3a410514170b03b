"""robopolicy-eval goal=: a goal-conditioned run is evaluated with one goal for every episode
(read as robopolicy-deploy reads it), so in-process and served evaluations condition alike."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _eval_toys import make_untrained_run
from _server_toys import make_goal_beso_run
from hydra import compose, initialize_config_dir

import robopolicy.evaluation as evaluation
from robopolicy.cli._hydra import CONF_DIR
from robopolicy.cli.eval import evaluate_run
from robopolicy.errors import ConfigError

GOAL = [0.0, 0.75, 0.0, 0.0, 0.0, 0.75]


def eval_cfg(run_dir, out, *extra):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("eval", overrides=[f"run_dir={run_dir}", "episodes=1", "device=cpu", "progress=false",
                                          "wandb.mode=disabled", f"out={out}", *extra])


@pytest.fixture
def goal_file(tmp_path):
    np.savez(tmp_path / "goal.npz", state=np.asarray(GOAL, np.float32))
    return tmp_path / "goal.npz"


def test_goal_reaches_the_evaluation(tmp_path, goal_file, monkeypatch):
    run = make_goal_beso_run(tmp_path / "beso", max_episode_steps=5)
    seen = []
    real = evaluation.evaluate_policy

    def spy(*args, **kwargs):
        seen.append(kwargs.get("goal"))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_policy", spy)
    evaluate_run(eval_cfg(run, tmp_path / "eval.json", f"goal={goal_file}"))
    np.testing.assert_array_equal(seen[0]["state"], np.asarray(GOAL, np.float32))


def test_goal_is_recorded_in_eval_json(tmp_path, goal_file):
    run = make_goal_beso_run(tmp_path / "beso", max_episode_steps=5)
    evaluate_run(eval_cfg(run, tmp_path / "eval.json", f"goal={goal_file}"))
    assert json.loads((tmp_path / "eval.json").read_text())["goal"] == {"state": GOAL}


def test_goal_for_a_goal_free_run_is_one_sentence(tmp_path, goal_file):
    run = tmp_path / "plain"
    make_untrained_run(run)
    with pytest.raises(ConfigError, match=r"^goal= was given but the policy is not goal-conditioned; drop goal= or train with goal\.keys=\[\.\.\.\]\.$"):
        evaluate_run(eval_cfg(run, tmp_path / "eval.json", f"goal={goal_file}"))


def test_goal_missing_a_key_is_one_sentence(tmp_path):
    np.savez(tmp_path / "other.npz", other=np.zeros(2, np.float32))
    run = make_goal_beso_run(tmp_path / "beso", max_episode_steps=5)
    with pytest.raises(ConfigError, match=r"^goal= lacks key\(s\) \['state'\]"):
        evaluate_run(eval_cfg(run, tmp_path / "eval.json", f"goal={tmp_path / 'other.npz'}"))
