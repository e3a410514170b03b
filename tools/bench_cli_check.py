"""Start-up cost of the command-line check that runs before Hydra starts a command.

``robopolicy.cli._hydra.check_command_line`` parses the overrides, composes the command's config
with Hydra's compose API and checks it against the command's schema; Hydra then composes again to
run. This prints the median and max time of that check per command (milliseconds, after one
warm-up call that pays the imports).

    OMP_NUM_THREADS=1 python tools/bench_cli_check.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

from robopolicy.cli._hydra import check_command_line

COMMANDS = {
    "collect": ["task=multimodal", "episodes=10", "out=x.zarr"],
    "train": ["task=multimodal", "policy=beso", "net=mlp", "dataset=x", "run_dir=y", "steps=10"],
    "train_critic": ["task=multimodal", "critic=iql", "dataset=x", "run_dir=y"],
    "eval": ["run_dir=x", "episodes=10", "policy.sampler.steps=3"],
    "deploy": ["run_dir=x", "rate_hz=50", "policy.sampler.steps=3", "task.max_episode_steps=50"],
    "policy_server": ["run_dir=x"],
    "semantics": ["mode=train", "budget=10"],
    "quickstart": ["steps=10"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    print(f"{'command':<14} {'median ms':>10} {'max ms':>8}")
    for name, argv in COMMANDS.items():
        check_command_line(name, argv)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            check_command_line(name, argv)
            times.append((time.perf_counter() - t0) * 1e3)
        print(f"{name:<14} {statistics.median(times):>10.1f} {max(times):>8.1f}")


if __name__ == "__main__":
    main()
