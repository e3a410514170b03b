"""Seeded vectorized rollouts: reproducible, batching-independent, with videos, modes and errors."""

import os

import numpy as np
import pytest

from robopolicy.errors import CheckpointError, ConfigError, TaskError
from robopolicy.evaluation import evaluate_policy, wilson_interval

from _eval_toys import GreedyPolicy, PointTask

os.environ.setdefault("MUJOCO_GL", "egl")


def _episodes(r):
    return list(zip(r["successes"], np.round(r["returns"], 9), r["episode_lengths"]))


def test_same_seeds_same_episodes_and_fields():
    task = PointTask()
    a = evaluate_policy(GreedyPolicy(task.spec, gain=0.3, noise=0.02), task, episodes=6, seed=1, num_envs=2, progress=False)
    b = evaluate_policy(GreedyPolicy(task.spec, gain=0.3, noise=0.02), task, episodes=6, seed=1, num_envs=2, progress=False)
    assert _episodes(a) == _episodes(b)
    assert a["seeds"] == [10000, 10001, 10002, 10003, 10004, 10005]
    # Another seed is another block of episodes: none shared (seed + i blocks would overlap).
    c = evaluate_policy(GreedyPolicy(task.spec, gain=0.3, noise=0.02), task, episodes=6, seed=2, num_envs=2, progress=False)
    assert not set(a["seeds"]) & set(c["seeds"])
    assert _episodes(a) != _episodes(c)
    # Summary fields agree with the per-episode lists.
    k = sum(a["successes"])
    assert a["success_rate"] == pytest.approx(k / 6) and a["episodes"] == 6
    assert a["ci95"] == pytest.approx(list(wilson_interval(k, 6)))
    assert a["mean_return"] == pytest.approx(np.mean(a["returns"]))
    assert a["latency_ms"]["p50"] <= a["latency_ms"]["p90"]
    assert 0 < k < 6, "the toy should give a mix of successes and failures"
    assert set(a["modes"]) <= {"left", "right"} and sum(a["modes"].values()) == 6


def test_batching_does_not_change_deterministic_episodes():
    """num_envs=1 and num_envs=4 (last batch padded) run the same episodes for a noise-free policy."""
    task = PointTask()
    one = evaluate_policy(GreedyPolicy(task.spec, gain=0.3), task, episodes=5, seed=0, num_envs=1, progress=False)
    four = evaluate_policy(GreedyPolicy(task.spec, gain=0.3), task, episodes=5, seed=0, num_envs=4, progress=False)
    assert _episodes(one) == _episodes(four)
    # Episodes end at success; failures run to the 12-step limit.
    assert 0 < sum(one["successes"]) < 5
    for s, n in zip(one["successes"], one["episode_lengths"]):
        assert (n <= 12) if s else (n == 12)
    assert min(n for s, n in zip(one["successes"], one["episode_lengths"]) if s) < 12
    # Fewer inference calls with more envs (batched inference across envs).
    assert four["latency_ms"]["n"] < one["latency_ms"]["n"]


def test_termination_and_zero_padding():
    """A policy that drives out of the box terminates early; finished envs are not counted on."""
    task = PointTask()
    r = evaluate_policy(GreedyPolicy(task.spec, gain=0.0, bias=0.1), task, episodes=6, seed=0, num_envs=3, progress=False)
    assert r["success_rate"] == 0.0
    lengths = r["episode_lengths"]
    assert any(n < 12 for n in lengths) and max(lengths) == 12  # some left the box before the time limit
    assert r["env_steps"] == sum(r["episode_lengths"])


def test_async_matches_sync():
    task = PointTask()
    s = evaluate_policy(GreedyPolicy(task.spec, gain=0.3, noise=0.02), task, episodes=4, seed=1, num_envs=2, vector="sync", progress=False)
    a = evaluate_policy(GreedyPolicy(task.spec, gain=0.3, noise=0.02), task, episodes=4, seed=1, num_envs=2, vector="async", progress=False)
    assert _episodes(s) == _episodes(a)


def test_videos_of_first_episodes(tmp_path):
    import imageio.v2 as imageio

    task = PointTask()
    r = evaluate_policy(GreedyPolicy(task.spec, gain=0.3), task, episodes=3, seed=0, num_envs=2,
                        video_dir=tmp_path, video_episodes=2, progress=False)
    files = sorted(tmp_path.glob("*.mp4"))
    assert [f.name.split("_")[0] for f in files] == ["episode000", "episode001"]
    assert len(r["videos"]) == 2
    frames = imageio.mimread(files[0])
    assert len(frames) == r["episode_lengths"][0] + 1  # reset frame + one per step


def test_bad_arguments():
    task = PointTask()
    with pytest.raises(ConfigError):
        evaluate_policy(GreedyPolicy(task.spec), task, episodes=0, progress=False)
    with pytest.raises(ConfigError):
        evaluate_policy(GreedyPolicy(task.spec), task, episodes=2, vector="threads", progress=False)


def test_missing_success_flag_is_a_task_error():
    class NoFlag(PointTask):
        def make_env(self, render=None):
            import gymnasium as gym

            class W(gym.Wrapper):
                def step(self, a):
                    o, r, te, tr, info = self.env.step(a)
                    return o, r, te, tr, {}

            return W(super().make_env(render))

    with pytest.raises(TaskError):
        evaluate_policy(GreedyPolicy(NoFlag().spec), NoFlag(), episodes=1, progress=False)


# -- robopolicy-eval command ----------------------------------------------------------------------
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _eval_cli(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl", "WANDB_MODE": "disabled"}
    flags = [a for a in args if a.startswith("--")]
    overrides = [a for a in args if not a.startswith("--")]
    return subprocess.run([sys.executable, "-m", "robopolicy.cli.eval", *flags, "wandb.mode=disabled", "progress=false", *overrides],
                          cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from _eval_toys import make_untrained_run

    return make_untrained_run(tmp_path_factory.mktemp("run"), "multimodal", step=7)


def test_eval_cli_no_checkpoint_is_one_line_exit_2(tmp_path):
    run = tmp_path / "empty_run"
    run.mkdir()
    p = _eval_cli(f"run_dir={run}")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no checkpoint" in lines[0]
    assert list(run.iterdir()) == []  # nothing half-done written


def test_eval_cli_writes_eval_json(tiny_run, tmp_path):
    out = tmp_path / "e" / "eval.json"
    p = _eval_cli(f"run_dir={tiny_run}", "episodes=2", "num_envs=2", "seed=3", "policy.sampler.steps=1",
                  "video_episodes=1", f"out={out}")
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["episodes"] == 2 and r["seeds"] == [30000, 30001] and len(r["ci95"]) == 2
    assert r["ci95"] == pytest.approx(list(wilson_interval(r["n_success"], 2)))
    assert r["latency_ms"]["p50"] > 0 and r["latency_ms"]["p90"] >= r["latency_ms"]["p50"]
    assert r["sampler"]["steps"] == 1 and r["sampler"]["name"] == "ddim"  # override applied, name from the checkpoint
    assert r["checkpoint"]["step"] == 7 and r["checkpoint"]["name"] == "step_7"
    assert r["task"]["name"] == "multimodal" and r["steer"] is None
    assert "++policy.sampler.steps=1" in r["overrides"]
    assert len(r["episode_lengths"]) == 2 and r["env_steps"] == sum(r["episode_lengths"])
    assert [Path(v).parent for v in r["videos"]] == [out.parent / "videos"] and Path(r["videos"][0]).stat().st_size > 0


@pytest.mark.parametrize("args,error,needle", [
    (["policy.sampler.name=nope"], ConfigError, "sampler"),
    (["task=planar_push"], CheckpointError, "observation 'state'"),
    (["task.env_name=x"], TaskError, None),
    (["steer=vgps"], ConfigError, "steer.critic"),
])
def test_eval_bad_input_is_one_sentence(tiny_run, tmp_path, args, error, needle):
    """In-process (composed like the command line) to keep the suite fast; exit code 2 is checked above."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.cli.eval import add_plus, evaluate_run

    out = tmp_path / "eval.json"
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("eval", overrides=add_plus([f"run_dir={tiny_run}", "episodes=1", "wandb.mode=disabled",
                                                   "progress=false", f"out={out}", *args]), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with pytest.raises(error) as e:
            evaluate_run(cfg)
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith(".") and (needle is None or needle in msg)
    assert not out.exists()


@pytest.mark.slow
def test_multirun_sweep_then_report(tiny_run, tmp_path, capsys):
    from robopolicy.cli.report import run as report_run

    sweep = tmp_path / "sweep"
    p = _eval_cli("--multirun", f"run_dir={tiny_run}", "episodes=2", "seed=0,1", "policy.sampler.steps=1,2",
                  f"sweep_dir={sweep}", "hydra.launcher.n_jobs=2")
    assert p.returncode == 0, p.stderr
    assert len(list(sweep.glob("*/eval.json"))) == 4
    res = report_run([str(sweep)])
    assert res["group_by"] == ["policy.sampler.steps"]
    assert [(r["policy.sampler.steps"], r["n_jobs"], r["episodes"]) for r in res["rows"]] == [("1", 2, 4), ("2", 2, 4)]
    assert (sweep / "report.md").is_file() and (sweep / "report.png").is_file()


def test_real_task_and_diffusion_policy_reproducible(tiny_run):
    """The multimodal MuJoCo task with a (stochastic) BESO sampler: same seeds, same trajectories."""
    import gymnasium as gym
    from omegaconf import OmegaConf

    from robopolicy.api import load
    from robopolicy.envs import make_task

    task_cfg = OmegaConf.load(next((tiny_run / "checkpoints").glob("step_*")) / "config.yaml").task
    task_cfg.max_episode_steps = 30
    base = make_task(task_cfg)
    log: list[np.ndarray] = []

    class Logged(gym.Wrapper):  # records every action the env receives (sync envs share this process)
        def step(self, action):
            log.append(np.array(action, copy=True))
            return self.env.step(action)

    class LoggedTask(type(base)):
        def __init__(self):
            self.__dict__.update(base.__dict__)

        def make_env(self, render=None):
            return Logged(base.make_env(render))

    def run(seed):
        log.clear()
        r = evaluate_policy(load(tiny_run, device="cpu"), LoggedTask(), episodes=3, seed=seed, num_envs=2, progress=False)
        return r, np.stack(log)

    (a, la), (b, lb), (_, lc) = run(11), run(11), run(12)
    assert a["returns"] == b["returns"] and a["episode_lengths"] == b["episode_lengths"]
    assert la.shape == lb.shape and np.array_equal(la, lb)  # bit-identical closed loop
    assert not np.array_equal(la, lc)  # another seed list: other starts and other sampler noise
