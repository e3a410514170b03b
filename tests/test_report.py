"""robopolicy-report on fabricated eval.json files: grouping, pooled intervals, files, errors."""

import csv
import json

import pytest

from robopolicy.cli.report import run as report_run
from robopolicy.evaluation import wilson_interval
from robopolicy.evaluation.report import aggregate, load_jobs, parse_overrides


def _job(root, i, env, sampler, seed, k, n, run_dir=None, hydra_only=False):
    d = root / str(i)
    d.mkdir(parents=True)
    overrides = [f"++task.env_name={env}", f"++policy.sampler.name={sampler}", f"seed={seed}"]
    res = {"success_rate": k / n, "episodes": n, "ci95": list(wilson_interval(k, n)), "sampler": {"name": sampler, "steps": 3}}
    if run_dir is not None:
        res["run_dir"] = str(run_dir)
    if hydra_only:  # overrides only in Hydra's own file
        (d / ".hydra").mkdir()
        (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    else:
        res["overrides"] = overrides
    (d / "eval.json").write_text(json.dumps(res))


# (env, sampler) -> successes of 20 episodes for seeds 0, 1, 2
DATA = {("reach-v3", "ddim"): [18, 16, 17], ("reach-v3", "euler"): [10, 12, 14],
        ("push-v3", "ddim"): [4, 6, 5], ("push-v3", "euler"): [0, 0, 3]}


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    i = 0
    for (env, sampler), ks in DATA.items():
        for seed, k in enumerate(ks):
            _job(root, i, env, sampler, seed, k, 20, hydra_only=(i % 2 == 1))
            i += 1
    return root


def test_parse_overrides():
    assert parse_overrides(["++a.b=1", "+c=x=y", "seed=2", "~d"]) == {"a.b": "1", "c": "x=y", "seed": "2"}


def test_aggregate_numbers(sweep):
    jobs = load_jobs(sweep)
    assert len(jobs) == 12
    group_by, rows = aggregate(jobs)
    assert group_by == ["task.env_name", "policy.sampler.name"]  # seed is swept but excluded
    assert len(rows) == 4
    for r in rows:
        ks = DATA[(r["task.env_name"], r["policy.sampler.name"])]
        rates = [k / 20 for k in ks]
        mean = sum(rates) / 3
        std = (sum((x - mean) ** 2 for x in rates) / 2) ** 0.5
        lo, hi = wilson_interval(sum(ks), 60)
        assert r["success_mean"] == pytest.approx(mean)
        assert r["success_std"] == pytest.approx(std)
        assert (r["ci95_lo"], r["ci95_hi"]) == (pytest.approx(lo), pytest.approx(hi))
        assert (r["n_jobs"], r["episodes"], r["successes"]) == (3, 60, sum(ks))
    # Asking for seed gives one cell per job.
    _, per_seed = aggregate(jobs, ["task.env_name", "policy.sampler.name", "seed"])
    assert len(per_seed) == 12 and all(r["success_std"] == 0.0 for r in per_seed)
    # A key that is not an override falls back to eval.json's own fields.
    _, by_steps = aggregate(jobs, ["policy.sampler.steps"])
    assert len(by_steps) == 1 and by_steps[0]["policy.sampler.steps"] == "3" and by_steps[0]["episodes"] == 240


def test_report_cli_writes_files(sweep, tmp_path, capsys):
    out = tmp_path / "rep"
    res = report_run([str(sweep), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "| task.env_name | policy.sampler.name |" in printed
    for name in ("report.md", "report.csv", "report.png"):
        assert (out / name).stat().st_size > 0
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert len(rows) == 4
    row = next(r for r in rows if r["task.env_name"] == "push-v3" and r["policy.sampler.name"] == "euler")
    assert float(row["success_mean"]) == pytest.approx(0.05)
    assert float(row["ci95_hi"]) == pytest.approx(wilson_interval(3, 60)[1])
    assert "train_eval_max" not in rows[0]  # no training summaries in this sweep
    assert res["group_by"] == ["task.env_name", "policy.sampler.name"]


def test_training_columns_all_three(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    # The trainer's names (eval/success_rate_max, ..., final.success_rate).
    (run / "summary.json").write_text(json.dumps({"eval/success_rate_max": 0.9, "eval/success_rate_last10_mean": 0.7,
                                                   "final": {"success_rate": 0.74}}))
    root = tmp_path / "sweep"
    _job(root, 0, "reach-v3", "ddim", 0, 15, 20, run_dir=run)
    _job(root, 1, "reach-v3", "euler", 0, 12, 20, run_dir=run)
    report_run([str(root), "--no-plot"])
    md = (root / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| policy.sampler.name"))
    for col in ("train_eval_max", "train_eval_last10_mean", "train_final_score"):
        assert col in header
    assert "| 0.900 | 0.700 | 0.740 |" in md


def test_report_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        report_run([str(tmp_path / "nope")])
    assert e.value.code == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        report_run([str(tmp_path / "empty")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
