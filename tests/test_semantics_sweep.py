"""tools/semantics_sweep.py: shared data made once before the runs (prepare_cache), runs side by side (--jobs) with
a log each, finished runs skipped, bad settings refused before anything runs; the Meta-World preset composes to the
recorded override list. Planar push with a tiny mapper, 12-step episodes and 1 transfer episode per point."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from robopolicy.cli._hydra import CONF_DIR

TOOLS = Path(__file__).resolve().parents[1] / "tools"
TINY = ["device=cpu", "mapper.members=2", "mapper.hidden_dim=8", "mapper.encoder.channels=[4,4]", "mapper.encoder.strides=[2,1]",
        "mapper.encoder.groups=2", "mapper.encoder.num_kp=4", "mapper.encoder.feature_dim=8", "trainer.batch_size=4",
        "task.max_episode_steps=12", "data.episodes=2", "data.test_episodes=1", "transfer.episodes=1",
        "transfer.every_round=false", "budget=2", "per_round=2", "segment_length=2", "train_schedule.steps=2",
        "vae_trainer.steps=2", "vae_trainer.batch_size=4", "vae.channels=4", "vae.latent_dim=2"]


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("semantics", overrides=list(overrides))


def _sweep(monkeypatch, *argv):
    spec = importlib.util.spec_from_file_location("semantics_sweep", TOOLS / "semantics_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(sys, "argv", ["semantics_sweep.py", *argv])
    return mod


def test_prepared_cache_holds_the_offline_and_held_out_episodes_and_the_reference(tmp_path):
    from robopolicy.semantics.experiment import prepare_cache

    from robopolicy.semantics.experiment import _Cache

    cfg = _cfg(f"cache_dir={tmp_path}", "run_strategies=[random_episodes]", *TINY)
    folder = prepare_cache(cfg)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["offline.npz", f"{_Cache(cfg).reference_name}.json", "test.npz"])


def test_prepared_cache_holds_the_latents_when_a_strategy_reads_them(tmp_path):
    from robopolicy.semantics.experiment import prepare_cache

    from robopolicy.semantics.experiment import _Cache

    cfg = _cfg(f"cache_dir={tmp_path}", "run_strategies=[diversity]", "vae_seed=3", *TINY)
    folder = prepare_cache(cfg)
    assert (folder / f"{_Cache(cfg).latents_name(3)}.npy").is_file()


def test_a_run_reads_the_prepared_cache_instead_of_collecting(tmp_path, monkeypatch):
    from robopolicy.semantics import experiment

    cfg = _cfg(f"cache_dir={tmp_path / 'cache'}", f"run_dir={tmp_path / 'run'}", "run_strategies=[random_episodes]", *TINY)
    experiment.prepare_cache(cfg)

    def collect(*a, **k):
        raise AssertionError("collected again")

    monkeypatch.setattr(experiment, "collect_real_episodes", collect)
    out = experiment.run_active_experiment(cfg)
    assert [r["annotations"] for r in out["curves"]["random_episodes"]] == [2]


def test_prepare_cache_without_a_cache_dir_is_refused():
    from robopolicy.errors import ConfigError
    from robopolicy.semantics.experiment import prepare_cache

    with pytest.raises(ConfigError, match="cache_dir"):
        prepare_cache(_cfg(*TINY))


def test_two_jobs_finish_both_seeds_each_with_its_log(tmp_path, monkeypatch):
    _sweep(monkeypatch, "--out", str(tmp_path), "--jobs", "2", "--seeds", "0", "1", "--strategies", "random_frames",
           "--", *TINY).main()
    runs = [tmp_path / "base" / "random_frames" / f"seed{k}" for k in (0, 1)]
    assert [(r / "results.json").is_file() and (r / "sweep.log").is_file() for r in runs] == [True, True]


def test_a_finished_run_is_skipped(tmp_path, monkeypatch, capsys):
    run = tmp_path / "base" / "random_frames" / "seed0"
    run.mkdir(parents=True)
    (run / "results.json").write_text("{}")
    _sweep(monkeypatch, "--out", str(tmp_path), "--seeds", "0", "--strategies", "random_frames", "--", *TINY).main()
    assert f"skip {run} (done)" in capsys.readouterr().out


def test_a_bad_setting_stops_the_sweep_before_any_run(tmp_path, monkeypatch, capsys):
    mod = _sweep(monkeypatch, "--out", str(tmp_path / "sw"), "--jobs", "2", "--seeds", "0", "1", "--strategies", "random_frames",
                 "--condition", "ok", "--condition", "bad", "proprio_semantics=[elbow]", "--", *TINY)
    with pytest.raises(SystemExit) as stop:
        mod.main()
    assert (stop.value.code, "elbow" in capsys.readouterr().err, (tmp_path / "sw").exists()) == (2, True, False)


def test_a_failed_side_by_side_run_is_named_with_its_log(tmp_path, monkeypatch, capsys):
    mod = _sweep(monkeypatch)
    failed = mod._side_by_side([(tmp_path / "r", ["mode=bogus", f"run_dir={tmp_path / 'r'}"])], jobs=1, threads=1)
    assert (failed, f"its output is in {tmp_path / 'r' / 'sweep.log'}" in capsys.readouterr().err) == ([tmp_path / "r"], True)


def test_the_metaworld_preset_is_the_recorded_setting():
    recorded = ("task=metaworld task.env_name=push-v3 device=cpu transfer.episodes=50 proprio_semantics=[hand_x,hand_y,hand_z,gripper] "
                "budget=100 per_round=50 data.test_episodes=5 data.reach_steps=30 mapper.members=3 "
                "mapper.encoder.channels=[16,16,16,16] trainer.batch_size=32 trainer.optim.lr=2e-3 train_schedule.steps=6000 "
                "vae_trainer.steps=400 vae_seed=0").split()
    assert OmegaConf.to_container(_cfg("+experiment=semantics_metaworld_push"), resolve=True) == \
        OmegaConf.to_container(_cfg(*recorded), resolve=True)


def test_the_metaworld_sweep_wrapper_passes_the_preset(tmp_path):
    out = subprocess.run(["bash", str(TOOLS / "semantics_metaworld_sweep.sh"), str(tmp_path), "--seeds", "0", "--",
                          "proprio_semantics=[elbow]"], capture_output=True, text=True, env=dict(os.environ, PY=sys.executable))
    assert (out.returncode, "elbow" in out.stderr, "push" in out.stdout) == (2, True, True)


def _plot_tool():
    spec = importlib.util.spec_from_file_location("semantics_sweep_plot", TOOLS / "semantics_sweep_plot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rec(a, rate, n=4):
    return {"annotations": a, "success_rate": rate, "episodes": n}


def test_the_plot_pools_the_seeds_episodes_at_each_annotation_count():
    pool = _plot_tool().pooled({0: [_rec(10, 0.25), _rec(20, 1.0)], 1: [_rec(10, 0.75)]})
    assert [(a, p["successes"], p["episodes"]) for a, p in pool.items()] == [(10, 4, 8), (20, 4, 4)]


def test_the_plot_finds_the_first_count_at_the_threshold():
    assert _plot_tool().first_reach([_rec(10, 0.5), _rec(20, 0.9), _rec(30, 1.0)], 0.9) == 20


def test_the_plot_tool_writes_the_figure_and_its_summary(tmp_path, monkeypatch):
    import json

    for seed, rates in ((0, (0.25, 1.0)), (1, (0.5, 0.75))):
        d = tmp_path / "sw" / "base" / "variance" / f"seed{seed}" / "variance"
        d.mkdir(parents=True)
        (d / "state.json").write_text(json.dumps({"records": [_rec(10, rates[0]), _rec(20, rates[1])]}))
    monkeypatch.setattr(sys, "argv", ["semantics_sweep_plot.py", "--sweep", str(tmp_path / "sw"), "--out", str(tmp_path / "c.png")])
    _plot_tool().main()
    summary = json.loads((tmp_path / "c.json").read_text())
    assert (summary["base"]["variance"]["mean"], (tmp_path / "c.png").is_file()) == ([0.375, 0.875], True)


def _one_seed_sweep(root, strategy, rates):
    import json

    d = root / "base" / strategy / "seed0" / strategy
    d.mkdir(parents=True)
    (d / "state.json").write_text(json.dumps({"records": [_rec(10, rates[0]), _rec(20, rates[1])]}))


def test_the_plot_adds_the_strategies_an_earlier_summary_holds_and_the_sweep_lacks(tmp_path, monkeypatch):
    import json

    _one_seed_sweep(tmp_path / "old", "random_frames", (0.0, 0.5))
    _one_seed_sweep(tmp_path / "old", "variance", (0.0, 0.0))  # superseded by the new sweep's variance
    monkeypatch.setattr(sys, "argv", ["p", "--sweep", str(tmp_path / "old"), "--out", str(tmp_path / "old.png")])
    _plot_tool().main()
    _one_seed_sweep(tmp_path / "new", "variance", (0.25, 1.0))
    monkeypatch.setattr(sys, "argv", ["p", "--sweep", str(tmp_path / "new"), "--out", str(tmp_path / "new.png"),
                                      "--with-summary", str(tmp_path / "old.json")])
    _plot_tool().main()
    summary = json.loads((tmp_path / "new.json").read_text())["base"]
    assert {k: v["mean"] for k, v in summary.items()} == {"variance": [0.25, 1.0], "random_frames": [0.0, 0.5]}


def test_the_plot_refuses_a_summary_it_did_not_write(tmp_path, monkeypatch):
    _one_seed_sweep(tmp_path / "sw", "variance", (0.25, 1.0))
    (tmp_path / "bad.json").write_text('{"base": {"variance": {"mean": [1]}}}')
    monkeypatch.setattr(sys, "argv", ["p", "--sweep", str(tmp_path / "sw"), "--out", str(tmp_path / "c.png"),
                                      "--with-summary", str(tmp_path / "bad.json")])
    with pytest.raises(SystemExit, match="is not a summary this tool wrote"):
        _plot_tool().main()


def test_a_transfer_run_says_which_mapper_it_scored(tmp_path):
    import json

    from robopolicy.semantics import experiment

    cfg = _cfg(f"run_dir={tmp_path / 'run'}", "run_strategies=[random_episodes]", *TINY)
    experiment.run_active_experiment(cfg)
    mapper_dir = tmp_path / "run" / "random_episodes" / "round_00"
    experiment.run_transfer(_cfg(f"run_dir={tmp_path / 'tr'}", "mode=transfer", f"mapper_dir={mapper_dir}", *TINY))
    assert json.loads((tmp_path / "tr" / "transfer.json").read_text())["mapper_dir"] == str(mapper_dir)


def _transfer_json(folder, mapper_dir=None, rate=0.5, n=50):
    import json

    folder.mkdir(parents=True)
    out = {"mapper": {"success_rate": rate, "episodes": n}, "true_semantics": {"success_rate": 1.0, "episodes": n}}
    if mapper_dir is not None:
        out["mapper_dir"] = str(mapper_dir)
    (folder / "transfer.json").write_text(json.dumps(out))
    return folder


def test_the_plot_reads_several_sweeps_as_one(tmp_path):
    _one_seed_sweep(tmp_path / "a", "variance", (0.25, 1.0))
    _one_seed_sweep(tmp_path / "b", "diversity", (0.5, 0.5))
    points, _ = _plot_tool().load([tmp_path / "a", tmp_path / "b"])
    assert sorted(points["base"]) == ["diversity", "variance"]


def test_a_named_sweep_is_its_own_condition(tmp_path):
    _one_seed_sweep(tmp_path / "a", "variance", (0.25, 1.0))
    _one_seed_sweep(tmp_path / "b", "variance", (0.5, 0.5))
    points, _ = _plot_tool().load([tmp_path / "a", tmp_path / "b"], [None, "other"])
    assert (sorted(points), [r["success_rate"] for r in points["other"]["variance"][0]]) == (["base", "other"], [0.5, 0.5])


def test_the_plot_refuses_a_run_held_by_two_sweeps(tmp_path):
    _one_seed_sweep(tmp_path / "a", "variance", (0.25, 1.0))
    _one_seed_sweep(tmp_path / "b", "variance", (0.5, 0.5))
    with pytest.raises(SystemExit, match="in more than one of the sweeps"):
        _plot_tool().load([tmp_path / "a", tmp_path / "b"])


def test_a_rescored_transfer_replaces_the_point_of_its_mapper(tmp_path):
    mod = _plot_tool()
    _one_seed_sweep(tmp_path / "sw", "variance", (0.25, 1.0))
    points, _ = mod.load([tmp_path / "sw"])
    run = _transfer_json(tmp_path / "tr", tmp_path / "sw" / "base" / "variance" / "seed0" / "variance" / "round_01", rate=0.42)
    mod.apply_rescored(points, [str(run)])
    assert [(r["success_rate"], r["episodes"]) for r in points["base"]["variance"][0]] == [(0.25, 4), (0.42, 50)]


def test_a_rescored_transfer_without_its_mapper_takes_it_after_the_equals_sign(tmp_path):
    mod = _plot_tool()
    _one_seed_sweep(tmp_path / "sw", "variance", (0.25, 1.0))
    points, _ = mod.load([tmp_path / "sw"])
    run = _transfer_json(tmp_path / "tr", None, rate=0.1)
    mod.apply_rescored(points, [f"{run}={tmp_path / 'sw' / 'base' / 'variance' / 'seed0' / 'variance' / 'round_00'}"])
    assert points["base"]["variance"][0][0]["success_rate"] == 0.1


def test_a_rescored_transfer_that_names_no_mapper_is_refused(tmp_path):
    mod = _plot_tool()
    _one_seed_sweep(tmp_path / "sw", "variance", (0.25, 1.0))
    points, _ = mod.load([tmp_path / "sw"])
    with pytest.raises(SystemExit, match="does not say which mapper it scored"):
        mod.apply_rescored(points, [str(_transfer_json(tmp_path / "tr", None))])


def test_a_rescored_transfer_of_a_mapper_outside_the_sweeps_is_refused(tmp_path):
    mod = _plot_tool()
    _one_seed_sweep(tmp_path / "sw", "variance", (0.25, 1.0))
    points, _ = mod.load([tmp_path / "sw"])
    run = _transfer_json(tmp_path / "tr", tmp_path / "other" / "base" / "hybrid" / "seed0" / "hybrid" / "round_00")
    with pytest.raises(SystemExit, match="no evaluated round"):
        mod.apply_rescored(points, [str(run)])


def test_the_legend_says_the_seeds_and_the_episodes_per_seed_behind_each_curve(tmp_path):
    mod = _plot_tool()
    e = mod.entry({0: [_rec(10, 0.5, n=50), _rec(20, 1.0, n=20)], 1: [_rec(10, 0.5, n=50)]}, None)
    assert mod.legend_counts(e) == "1-2 seeds x 20-50 ep."


def test_a_strategy_keeps_its_colour_in_every_panel(tmp_path, monkeypatch):
    import json

    for cond, strategies in (("a", ("diversity", "random_episodes")), ("b", ("random_episodes",))):
        for strategy in strategies:
            d = tmp_path / "sw" / cond / strategy / "seed0" / strategy
            d.mkdir(parents=True)
            (d / "state.json").write_text(json.dumps({"records": [_rec(10, 0.5), _rec(20, 1.0)]}))
    import robopolicy.utils.plots as plots

    mod = _plot_tool()
    figures = []
    monkeypatch.setattr(plots, "save_figure_with_summary", lambda fig, out, summary: figures.append(fig))
    monkeypatch.setattr(sys, "argv", ["semantics_sweep_plot.py", "--sweep", str(tmp_path / "sw"), "--out", str(tmp_path / "c.png")])
    mod.main()
    colours = [{ln.get_label().split()[0]: ln.get_color() for ln in ax.get_lines()} for ax in figures[0].axes]
    assert colours[0]["random_episodes"] == colours[1]["random_episodes"] != colours[0]["diversity"]


def test_a_sweep_spec_names_its_folder_condition_and_strategies():
    assert _plot_tool().parse_sweep("runs/a=default@variance,hybrid") == (Path("runs/a"), "default", {"variance", "hybrid"})


def test_a_sweep_with_strategies_named_contributes_only_their_runs(tmp_path):
    _one_seed_sweep(tmp_path / "a", "variance", (0.25, 1.0))
    _one_seed_sweep(tmp_path / "a", "diversity", (0.5, 0.5))
    points, _ = _plot_tool().load([tmp_path / "a"], [None], [{"variance"}])
    assert sorted(points["base"]) == ["variance"]


def test_a_strategy_named_that_the_sweep_did_not_run_is_refused(tmp_path):
    _one_seed_sweep(tmp_path / "a", "variance", (0.25, 1.0))
    with pytest.raises(SystemExit, match="no run of hybrid"):
        _plot_tool().load([tmp_path / "a"], [None], [{"hybrid"}])


def _pooled_summary():
    return {"base": {"variance": {"pooled": {"50": {"successes": 10, "episodes": 10}}},
                     "diversity": {"pooled": {"50": {"successes": 0, "episodes": 10}}}}}


def test_compare_tests_two_pooled_points_with_fishers_exact_test():
    # [[10, 0], [0, 10]]: two-sided p = 2 / C(20, 10) = 1.08e-05
    line = _plot_tool().compare(_pooled_summary(), "base:variance:50", "base:diversity:50")
    assert line.endswith("10/10 against base:diversity:50 0/10: Fisher's exact p = 1.1e-05")


def test_compare_refuses_a_point_the_summary_lacks():
    with pytest.raises(SystemExit, match="no pooled point 'variance' at '100'"):
        _plot_tool().compare(_pooled_summary(), "base:variance:100", "base:diversity:50")
