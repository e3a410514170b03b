"""Fuzz the episode store: damage stores in many ways and check every damage is an error, never silent.

Each case writes a fresh store of random episodes (seeded), damages it in one way, then reads it back
(opening with the full decode of small stores, or as a large store would be read: presence check on
open, decoding when episodes are read). Outcomes:

* clean error  -- a RobopolicyError (one sentence) was raised;
* recovered    -- no error, and every committed episode reads back identically (kills, concurrent writers);
* crash        -- any other exception escaped;
* data lost    -- no error, but a committed episode is missing or reads back different.

Damages: delete / truncate / empty / garbage / bit-flipped chunk file, rewritten meta/episode_ends
(shifted, swapped, shortened, lengthened, decreasing), damaged zarr.json files, SIGKILL of a writer
process mid-append, two writer processes on one store, and a reader opening and reading the store
over and over while a writer process appends (any error there is a false alarm, counted as a
crash). Bounded by --cases and --time-s.

    OMP_NUM_THREADS=1 python tools/fuzz_store.py                       # 300 cases, at most 600 s
    OMP_NUM_THREADS=1 python tools/fuzz_store.py --cases 40 --seed 1   # quick
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import zarr

from robopolicy.data import EpisodeStore
from robopolicy.envs.spec import EnvSpec, ObsKeySpec
from robopolicy.errors import RobopolicyError

REPO = Path(__file__).resolve().parents[1]
SPEC = EnvSpec(obs={"state": ObsKeySpec((3,)), "cam": ObsKeySpec((8, 8, 3), "uint8", "rgb")}, action_dim=2,
               action_low=(-1.0, -1.0), action_high=(1.0, 1.0), max_episode_steps=64, name="fuzz")


def make_episode(seed: int, i: int) -> dict[str, np.ndarray]:
    """Episode ``i`` of writer ``seed`` (deterministic, so any reader can check it)."""
    rng = np.random.default_rng([seed, i])
    T = int(rng.integers(3, 41))
    return {"state": rng.normal(size=(T, 3)).astype(np.float32), "cam": rng.integers(0, 256, (T, 8, 8, 3), dtype=np.uint8),
            "action": rng.uniform(-1, 1, (T, 2)).astype(np.float32), "reward": rng.normal(size=T).astype(np.float32),
            "success": rng.random(T) < 0.2, "done": np.arange(T) == T - 1}


def write_store(path: Path, seed: int, n: int) -> None:
    with EpisodeStore.create(path, SPEC, fsync=False) as store:
        for i in range(n):
            store.append_episode(make_episode(seed, i))


def chunk_files(path: Path) -> list[Path]:
    """Chunk files of the committed arrays (data/* and meta/episode_ends)."""
    return sorted(p for p in path.rglob("*") if p.is_file() and "/c/" in p.as_posix()[len(str(path)):])


# -- damages ------------------------------------------------------------------------------------
def damage_chunk(path: Path, rng: np.random.Generator, how: str) -> str:
    f = chunk_files(path)[int(rng.integers(len(chunk_files(path))))]
    data = f.read_bytes()
    if how == "delete":
        f.unlink()
    elif how == "truncate":
        f.write_bytes(data[: int(rng.integers(0, len(data)))])
    elif how == "empty":
        f.write_bytes(b"")
    elif how == "garbage":
        f.write_bytes(rng.bytes(int(rng.integers(1, 2 * len(data) + 2))))
    elif how == "flip_bit":
        b = bytearray(data)
        pos = int(rng.integers(len(b)))
        b[pos] ^= 1 << int(rng.integers(8))
        f.write_bytes(bytes(b))
    return f"{how} {f.relative_to(path)}"


def damage_episode_ends(path: Path, rng: np.random.Generator) -> str:
    arr = zarr.open_group(str(path), mode="r+")["meta/episode_ends"]
    ends = arr[:]
    how = str(rng.choice(["shift", "swap", "shorten", "lengthen", "decrease", "zero"]))
    if how == "shift":
        i = int(rng.integers(len(ends) - 1))  # keep the total: only the boundary moves
        ends[i] = ends[i] + (1 if ends[i] + 1 < ends[i + 1] else -1)
    elif how == "swap" and len(ends) > 1:
        ends[[0, 1]] = ends[[1, 0]]
    elif how == "shorten":
        arr.resize((len(ends) - 1,))
        return how
    elif how == "lengthen":
        arr.resize((len(ends) + 1,))
        arr[-1] = ends[-1] + 5
        return how
    elif how == "decrease":
        ends = ends[::-1].copy()
    else:
        ends[:] = 0
    arr[:] = ends
    return how


def damage_metadata(path: Path, rng: np.random.Generator) -> str:
    files = sorted(path.rglob("zarr.json"))
    f = files[int(rng.integers(len(files)))]
    how = str(rng.choice(["delete", "truncate", "garbage"]))
    data = f.read_bytes()
    if how == "delete":
        f.unlink()
    elif how == "truncate":
        f.write_bytes(data[: int(rng.integers(0, len(data)))])
    else:
        f.write_bytes(rng.bytes(len(data)))
    return f"{how} {f.relative_to(path)}"


# -- reading back -------------------------------------------------------------------------------
def read_back(path: Path, expected: dict[int, dict], full_verify: bool) -> str:
    """'clean error', 'recovered', 'data lost' or 'crash: ...' for the store at ``path``."""
    try:
        with warnings.catch_warnings():  # zarr warns about folders without metadata; the outcome is what counts
            warnings.simplefilter("ignore")
            store = EpisodeStore.open(path, verify=None if full_verify else False)
        got = {i: store.episode(i) for i in range(store.n_episodes)}
        for key in store.keys:
            store.get(key)
    except RobopolicyError as e:
        return "clean error" if len(str(e).splitlines()) == 1 else f"crash: multi-line error {str(e)[:60]!r}"
    except Exception as e:  # noqa: BLE001 - the point of the fuzzer: anything else is a crash
        return f"crash: {type(e).__name__}: {str(e)[:80]} @ {traceback.extract_tb(e.__traceback__)[-1].name}"
    for i, want in expected.items():
        if i not in got or any(not np.array_equal(got[i][k], v) for k, v in want.items()):
            return "data lost"
    return "recovered"


# -- writer processes ---------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tools!r})
    from fuzz_store import make_episode
    from robopolicy.data.store import EpisodeStore
    from robopolicy.data.store_lock import StoreLockedError
    path, seed, pause_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    try:
        store = EpisodeStore.open(path, mode="a", fsync=False)
    except StoreLockedError:
        print("LOCKED", flush=True)
        sys.exit(3)
    print("OPEN", store.n_episodes, flush=True)
    time.sleep(pause_s)
    for i in range(store.n_episodes, 10**6):
        store.append_episode(make_episode(seed, i))
        print("committed", i, flush=True)
        if pause_s and i > 40:
            break
    """
)


def _spawn(path: Path, seed: int, pause_s: float) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", WRITER.format(tools=str(REPO / "tools")), str(path), str(seed), str(pause_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _lines(proc: subprocess.Popen, out: list[str]) -> threading.Thread:
    t = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    t.start()
    return t


def kill_mid_append(path: Path, rng: np.random.Generator, seed: int, n: int) -> tuple[str, dict[int, dict]]:
    """SIGKILL a writer at a random moment; every episode it reported committed must survive."""
    proc, lines = _spawn(path, seed, 0.0), []
    reader = _lines(proc, lines)
    t0 = time.monotonic()
    while not any(s.startswith("OPEN") for s in lines) and time.monotonic() - t0 < 60 and proc.poll() is None:
        time.sleep(0.01)
    delay_s = float(rng.uniform(0.0, 0.6))
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(5)
    committed = [int(s.split()[1]) for s in lines if s.startswith("committed")]
    n_committed = max(max(committed, default=-1) + 1, n)
    expected = {i: make_episode(seed, i) for i in range(n_committed)}
    return f"killed after {delay_s:.2f} s, {n_committed} committed", expected


def concurrent_writers(path: Path, seed: int, n: int) -> tuple[str, dict[int, dict], bool]:
    """Two writers at once: one must be refused by the lock; nothing either committed may be lost."""
    procs = [_spawn(path, seed, 0.3), _spawn(path, seed, 0.3)]
    outs = [p.communicate(timeout=120)[0].splitlines() for p in procs]
    refused = sum(p.returncode == 3 for p in procs)
    committed = [int(s.split()[1]) for out in outs for s in out if s.startswith("committed")]
    both_wrote = sum(any(s.startswith("committed") for s in out) for out in outs) == 2 and len(committed) != len(set(committed))
    expected = {i: make_episode(seed, i) for i in range(max(max(committed, default=-1) + 1, n))}
    return f"{refused} of 2 writers refused", expected, both_wrote


def reader_during_append(path: Path, seed: int, n: int) -> tuple[str, str]:
    """Open and read the store over and over while a writer appends: no error, no wrong episode."""
    proc, lines = _spawn(path, seed, 0.0), []
    _lines(proc, lines)
    t0 = time.monotonic()
    while not any(s.startswith("committed") for s in lines) and time.monotonic() - t0 < 60 and proc.poll() is None:
        time.sleep(0.01)
    reads, t0 = 0, time.monotonic()
    outcome = "recovered"
    try:
        while time.monotonic() - t0 < 2.0 and outcome == "recovered":
            outcome = read_back(path, {i: make_episode(seed, i) for i in range(n)}, full_verify=bool(reads % 2))
            store = EpisodeStore.open(path, verify=False)
            for i in range(n, store.n_episodes):  # episodes the writer committed meanwhile
                if any(not np.array_equal(store.episode(i)[k], v) for k, v in make_episode(seed, i).items()):
                    outcome = "data lost"
            reads += 1
    except RobopolicyError as e:
        outcome = f"crash: error while a writer appends: {str(e)[:80]}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if outcome == "clean error":  # nothing was damaged, so any error is a false alarm
        outcome = "crash: error while a writer appends"
    grown = EpisodeStore.open(path, verify=False).n_episodes if outcome == "recovered" else "?"
    return f"{reads} reads while the store grew from {n} to {grown} episodes", outcome


# -- driver -------------------------------------------------------------------------------------
KINDS = ["delete", "truncate", "empty", "garbage", "flip_bit", "episode_ends", "metadata", "kill", "concurrent", "reader"]
WEIGHTS = np.array([2, 2, 1, 2, 2, 2, 1, 1, 0.4, 0.4])


def run_case(root: Path, case: int, seed: int) -> tuple[str, str, str]:
    rng = np.random.default_rng([seed, case])
    kind = str(rng.choice(KINDS, p=WEIGHTS / WEIGHTS.sum()))
    path = root / f"case{case}.zarr"
    n = int(rng.integers(2, 9))
    write_store(path, case, n)
    expected = {i: make_episode(case, i) for i in range(n)}
    if kind in ("delete", "truncate", "empty", "garbage", "flip_bit"):
        what = damage_chunk(path, rng, kind)
    elif kind == "episode_ends":
        what = damage_episode_ends(path, rng)
    elif kind == "metadata":
        what = damage_metadata(path, rng)
    elif kind == "kill":
        what, expected = kill_mid_append(path, rng, case, n)
    elif kind == "reader":
        what, outcome = reader_during_append(path, case, n)
        return kind, what, outcome
    else:
        what, expected, both = concurrent_writers(path, case, n)
        if both:
            return kind, what, "data lost"  # two writers appended the same episode numbers
    outcome = read_back(path, expected, full_verify=bool(rng.integers(2)))
    if kind in ("kill", "concurrent") and outcome == "recovered":
        # the store must also accept the next append after the damage
        try:
            with EpisodeStore.open(path, mode="a", fsync=False) as store:
                store.append_episode(make_episode(case, store.n_episodes))
                expected[store.n_episodes - 1] = make_episode(case, store.n_episodes - 1)
        except RobopolicyError:
            return kind, what, "data lost"
        outcome = read_back(path, expected, full_verify=True)
    return kind, what, outcome


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=300)
    p.add_argument("--time-s", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    counts: collections.Counter = collections.Counter()
    per_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    problems: list[str] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for case in range(args.cases):
            if time.monotonic() - t0 > args.time_s:
                break
            kind, what, outcome = run_case(Path(tmp), case, args.seed * 100_000)
            label = "crash" if outcome.startswith("crash") else outcome
            counts[label] += 1
            per_kind[kind][label] += 1
            if label in ("crash", "data lost"):
                problems.append(f"case {case} {kind} ({what}): {outcome}")
            if kind == "concurrent":
                per_kind[kind][f"[{what}]"] += 1
    tried = sum(counts.values())
    print(f"cases tried {tried}, clean errors {counts['clean error']}, recovered {counts['recovered']}, "
          f"crashes {counts['crash']}, data lost {counts['data lost']}  ({time.monotonic() - t0:.0f} s, seed {args.seed})")
    for kind in KINDS:
        c = per_kind.get(kind)
        if c:
            print(f"  {kind:13s} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    for line in problems:
        print("  " + line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
