"""Every user error of every command is one ``error:`` line on stderr and exit status 2.

The commands run in-process through their real ``main`` (sys.argv patched); each case fails
before any heavy work, so the file takes seconds. One case runs the console entry as a subprocess
to check the real exit status.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from robopolicy.cli import _hydra

# The subprocess imports the same robopolicy as this process (a worktree, not the venv's install).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl", "PYTHONPATH": str(Path(_hydra.__file__).parents[2])}


def run(command: str, args: list[str], monkeypatch, capsys) -> tuple[int, list[str]]:
    """(exit status, stderr lines) of ``robopolicy.cli.<command>.main()`` with ``args``."""
    module = importlib.import_module(f"robopolicy.cli.{command}")
    monkeypatch.setattr(sys, "argv", [f"robopolicy-{command}", *args])
    with pytest.raises(SystemExit) as exc:
        module.main()
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


def one_error_line(code: int, lines: list[str]) -> str:
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize("command,args,key", [
    ("collect", ["episodes=abc"], "episodes must be an integer"),
    ("train", ["steps=abc", "dataset=x", "run_dir=y"], "steps must be an integer"),
    ("deploy", ["rate_hz=abc", "run_dir=x"], "rate_hz must be a number"),
    ("eval", ["run_dir=x", "policy.sampler.steps=abc"], "policy.sampler.steps must be an integer"),
])
def test_wrong_type_is_one_line(command, args, key, monkeypatch, capsys):
    assert key in one_error_line(*run(command, args, monkeypatch, capsys))


@pytest.mark.parametrize("command,args,key", [
    ("collect", ["episodes=0"], "episodes must be an integer >= 1, got 0"),
    ("eval", ["run_dir=x", "episodes=0"], "episodes must be an integer >= 1 (or null), got 0"),
    ("train", ["batch_size=0", "dataset=x", "run_dir=y"], "batch_size must be an integer >= 1, got 0"),
    ("deploy", ["rate_hz=-5", "run_dir=x"], "rate_hz must be a number > 0, got -5"),
    ("policy_server", ["run_dir=x", "torch_threads=0"], "torch_threads must be an integer >= 1"),
    ("train_critic", ["gamma=2", "dataset=x", "run_dir=y"], "gamma must be a number > 0 and <= 1"),
    ("semantics", ["budget=0"], "budget must be an integer >= 1"),
    ("semantics", ["annotation_noise=-0.1"], "annotation_noise must be a number >= 0, got -0.1"),
    ("semantics", ["transition_noise=-0.1"], "transition_noise must be a number >= 0, got -0.1"),
    ("quickstart", ["demos=0"], "demos must be an integer >= 1"),
])
def test_out_of_range_is_refused(command, args, key, monkeypatch, capsys):
    assert key in one_error_line(*run(command, args, monkeypatch, capsys))


def test_range_error_shows_the_configured_default_as_the_fix(monkeypatch, capsys):
    line = one_error_line(*run("collect", ["episodes=0"], monkeypatch, capsys))
    assert line.endswith("pass e.g. episodes=50.")


def test_choice_error_lists_the_choices(monkeypatch, capsys):
    line = one_error_line(*run("semantics", ["mode=foo"], monkeypatch, capsys))
    assert "mode must be one of train, active, transfer, got 'foo'" in line


def test_misspelt_key_gets_the_close_match(monkeypatch, capsys):
    line = one_error_line(*run("train", ["stpes=3"], monkeypatch, capsys))
    assert line == "error: Unknown key 'stpes'; did you mean 'steps'?"


def test_misspelt_nested_key_gets_the_close_match(monkeypatch, capsys):
    line = one_error_line(*run("train", ["policy.sampler.stepz=3"], monkeypatch, capsys))
    assert line == "error: Unknown key 'policy.sampler.stepz'; did you mean 'policy.sampler.steps'?"


def test_key_in_the_wrong_section_points_at_the_right_one(monkeypatch, capsys):
    line = one_error_line(*run("train", ["trainer.steps=3"], monkeypatch, capsys))
    assert line == "error: Unknown key 'trainer.steps'; did you mean 'steps'?"


def test_unknown_group_choice_suggests_the_close_one(monkeypatch, capsys):
    line = one_error_line(*run("train", ["policy=besoo"], monkeypatch, capsys))
    assert "Unknown policy 'besoo'; use policy=beso" in line


def test_unparsable_override_is_one_line(monkeypatch, capsys):
    line = one_error_line(*run("collect", ["episodes=[1,"], monkeypatch, capsys))
    assert "Cannot read the override 'episodes=[1,'" in line


def test_sweep_without_multirun_is_one_line(monkeypatch, capsys):
    line = one_error_line(*run("collect", ["seed=1,2"], monkeypatch, capsys))
    assert "add --multirun" in line


def test_adding_an_existing_key_says_drop_the_plus(monkeypatch, capsys):
    line = one_error_line(*run("train", ["+steps=3"], monkeypatch, capsys))
    assert line == "error: The key 'steps' already exists; write steps=3 without the +."


def test_unresolvable_interpolation_is_one_line(monkeypatch, capsys, tmp_path):
    line = one_error_line(*run("collect", ["task=multimodal", "task.name=${nosuchkey}", f"out={tmp_path / 'x.zarr'}"], monkeypatch, capsys))
    assert "nosuchkey" in line


def test_missing_mandatory_value_is_one_sentence(capsys):
    @_hydra.report_errors
    def command():
        return OmegaConf.create({"run_dir": "???"}).run_dir

    with pytest.raises(SystemExit) as exc:
        command()
    line = one_error_line(exc.value.code, capsys.readouterr().err.strip().splitlines())
    assert line == "error: run_dir is required; add run_dir=<value> to the command."


@pytest.mark.parametrize("command", ["deploy", "eval", "policy_server"])
def test_documented_sampler_and_task_overrides_are_accepted(command, monkeypatch, capsys, tmp_path):
    """conf/deploy.yaml documents policy.sampler.steps=3 and task.*: composition takes them; the
    command then stops at the missing run (its own sentence), not at an unknown key."""
    args = [f"run_dir={tmp_path / 'nope'}", "policy.sampler.steps=3"] + ([] if command == "policy_server" else ["task.max_episode_steps=50"])
    line = one_error_line(*run(command, args, monkeypatch, capsys))
    assert "nope" in line
    assert "Unknown key" not in line


def test_user_config_dir_from_the_environment_adds_a_robot(monkeypatch, capsys, tmp_path):
    (tmp_path / "mine" / "robot").mkdir(parents=True)
    (tmp_path / "mine" / "robot" / "myarm.yaml").write_text("_target_: robopolicy.runtime.sim_robot.make_sim_robot\n")
    monkeypatch.setenv("ROBOPOLICY_CONFIG_DIR", str(tmp_path / "mine"))
    line = one_error_line(*run("deploy", ["robot=myarm", f"run_dir={tmp_path / 'nope'}"], monkeypatch, capsys))
    assert "run_dir=" in line
    assert "Unknown robot" not in line


def test_user_config_dir_flag_adds_a_task(tmp_path):
    (tmp_path / "mine" / "task").mkdir(parents=True)
    (tmp_path / "mine" / "task" / "mytask.yaml").write_text("defaults:\n  - multimodal\n  - _self_\nname: mytask\n")
    cfg_line = _hydra.check_command_line("collect", ["--config-dir", str(tmp_path / "mine"), "task=mytask"])
    assert cfg_line == ["--config-dir", str(tmp_path / "mine"), "task=mytask"]


def test_unknown_task_mentions_the_user_config_folder(monkeypatch, capsys):
    line = one_error_line(*run("collect", ["task=mytask"], monkeypatch, capsys))
    assert "ROBOPOLICY_CONFIG_DIR" in line


def test_missing_user_config_dir_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("ROBOPOLICY_CONFIG_DIR", str(tmp_path / "absent"))
    line = one_error_line(*run("collect", ["episodes=1"], monkeypatch, capsys))
    assert "ROBOPOLICY_CONFIG_DIR does not exist" in line


def test_report_usage_error_is_one_line(monkeypatch, capsys):
    line = one_error_line(*run("report", [], monkeypatch, capsys))
    assert "sweep_dir" in line


def test_console_command_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "robopolicy.cli.collect", "episodes=abc"], env=ENV, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert (proc.returncode, proc.stderr.count("\n"), proc.stderr.startswith("error: episodes")) == (2, 1, True), proc.stderr


def test_sweep_value_out_of_range_stops_before_the_sweep_starts(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(*run("collect", ["--multirun", "task=multimodal", "episodes=0,1", "out=d.zarr"], monkeypatch, capsys))
    assert "episodes must be an integer >= 1, got 0" in line
    assert list(tmp_path.iterdir()) == []  # no multirun/ folder, no store


def _documented_examples():
    """(config name, argv) of every ``#   robopolicy-<command> ...`` example in conf/<command>.yaml."""
    import re
    import shlex

    out = []
    for path in sorted(_hydra.CONF_DIR.glob("*.yaml")):
        for line in path.read_text().splitlines():
            m = re.match(r"#\s{2,}robopolicy-(\S+) (.*)", line)
            if m and m.group(1) != "report":
                args = re.split(r"\s+(#|\()", m.group(2))[0].replace("$TOKEN", "secret")
                out.append((m.group(1).replace("-", "_"), shlex.split(args)))
    return out


@pytest.mark.parametrize("config_name,argv", _documented_examples(), ids=lambda x: " ".join(x) if isinstance(x, list) else x)
def test_documented_example_passes_the_check(config_name, argv):
    from robopolicy.cli.import_data import bare_argument_as

    bare = {"import": "src", "export": "store"}  # these commands take their source as a bare first argument
    if config_name in bare:
        argv = bare_argument_as(bare[config_name], argv)
    checked = _hydra.check_command_line(config_name, argv)
    assert [a.lstrip("+") for a in checked[:len(argv)]] == argv  # every override kept (open sections gain ++)


GROUP_CHOICES = [("collect", [f"task={t}"]) for t in ("metaworld", "multimodal", "planar_push")] + [
    ("train", [f"policy={p}", f"net={n}"]) for p in ("bc", "beso", "diffusion") for n in ("mlp", "transformer", "unet")] + [
    ("train_critic", [f"critic={c}"]) for c in ("iql", "calql")] + [
    ("deploy", ["run_dir=x", f"runner={r}"]) for r in ("default", "eval_match")] + [
    ("eval", ["run_dir=x", "steer=vgps", "steer.critic=x"]),
    ("semantics", ["semantics/real_env@real_env=same_dynamics"]),
]


@pytest.mark.parametrize("config_name,argv", GROUP_CHOICES, ids=lambda x: " ".join(x) if isinstance(x, list) else x)
def test_every_shipped_config_passes_its_schema(config_name, argv):
    assert _hydra.check_command_line(config_name, argv) == argv


def test_unknown_choice_of_a_packaged_group_is_one_line(monkeypatch, capsys):
    line = one_error_line(*run("semantics", ["semantics/real_env@real_env=nosuch"], monkeypatch, capsys))
    assert "Unknown semantics/real_env 'nosuch'" in line


def test_misspelt_key_in_a_sweep_stops_before_the_sweep_starts(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(*run("train", ["--multirun", "stpes=1,2"], monkeypatch, capsys))
    assert line == "error: Unknown key 'stpes'; did you mean 'steps'?"


def test_unknown_choice_in_a_sweep_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(*run("train", ["--multirun", "task=multimodal,nosuch"], monkeypatch, capsys))
    assert "Unknown task 'nosuch'" in line
