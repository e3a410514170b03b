"""``robopolicy-verify PATH [PATH ...]``: check that every committed chunk of episode stores exists and decodes.

Prints one summary line per store; a damaged store ends in ``error: <one sentence>`` and exit
status 2. Opening a store already checks that its chunks are present (and decodes small stores in
full); this command decodes every chunk of a store of any size.
"""

from __future__ import annotations

import argparse

from robopolicy.cli._hydra import report_errors


@report_errors
def run(paths: list[str]) -> None:
    from robopolicy.data.store import EpisodeStore

    for path in paths:
        store = EpisodeStore.open(path, verify=False)  # the full check follows, once
        print(store.verify(decode=True).summary())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="robopolicy-verify", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="episode store (zarr folder)")
    run(parser.parse_args(argv).paths)


if __name__ == "__main__":
    main()
