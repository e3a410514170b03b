"""robopolicy-semantics config composes; user errors are one-sentence ConfigErrors; the figure is written."""

import pytest
from hydra import compose, initialize_config_dir

from robopolicy.cli._hydra import CONF_DIR
from robopolicy.errors import ConfigError


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("semantics", overrides=list(overrides))


def test_config_has_five_strategies_and_user_errors():
    from hydra.utils import instantiate

    from robopolicy.semantics.experiment import main_modes

    cfg = _cfg()
    names = ["random_frames", "random_episodes", "diversity", "variance", "hybrid"]
    assert list(cfg.run_strategies) == names
    assert [instantiate(cfg.strategies[n]).name for n in names] == names
    with pytest.raises(ConfigError, match="mode=train"):
        main_modes(_cfg("mode=bogus"))
    with pytest.raises(ConfigError, match="mapper_dir"):
        main_modes(_cfg("mode=transfer"))


def test_plot_curves_writes_one_figure(tmp_path):
    from robopolicy.semantics.plots import plot_curves

    rounds = [{"annotations": a, "success_rate": s, "ci95": [max(0, s - 0.1), min(1, s + 0.1)], "offline_error_m": e,
               "offline_error_se_m": 0.001} for a, s, e in [(10, 0.2, 0.05), (20, 0.6, 0.02)]]
    out = plot_curves({"diversity": rounds, "random_frames": rounds[:1]}, tmp_path / "c.png",
                      {"success_rate": 0.9, "ci95": [0.8, 0.95]})
    assert out.exists() and out.stat().st_size > 10_000
