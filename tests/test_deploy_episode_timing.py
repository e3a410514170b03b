"""robopolicy-deploy's per-episode timing: which episodes had a late chunk or a late send (the
events that can make a runner episode differ from the synchronous evaluation of the same seed)."""

from __future__ import annotations

from types import SimpleNamespace

from robopolicy.cli.deploy import episode_timing

PERIOD = 0.2


def fake_runner(latencies):
    """Two episodes of 4 ticks each (0.0-0.6 s, then 10.0-10.6 s); the second tick of episode 2 sent late."""
    targets = [0.0, 0.2, 0.4, 0.6, 10.0, 10.2, 10.4, 10.6]
    sent = [0.01, 0.01, 0.01, 0.01, 0.01, 0.19, 0.01, 0.01]
    stats = SimpleNamespace(tick_target_s=targets, tick_sent_s=sent,
                            episodes=[{"seed": 1, "ticks": [0, 4]}, {"seed": 2, "ticks": [4, 8]}])
    return SimpleNamespace(stats=stats, cfg=SimpleNamespace(deadline_frac=0.85), clock=SimpleNamespace(period_s=PERIOD),
                           worker=SimpleNamespace(latencies=latencies))


def test_chunk_finished_after_its_ticks_deadline_is_late():
    # asked at 0.41 (tick 0.4), done at 0.61 > 0.4 + 0.17
    rep = episode_timing(fake_runner([(0.61, 0.20)]))
    assert [e["late_chunks"] for e in rep] == [1, 0]


def test_chunk_within_the_deadline_is_not_late():
    rep = episode_timing(fake_runner([(0.50, 0.09)]))  # asked at 0.41, done at 0.50 < 0.57
    assert [e["late_chunks"] for e in rep] == [0, 0]


def test_first_chunk_awaited_before_the_episode_is_not_counted():
    rep = episode_timing(fake_runner([(9.99, 1.5)]))  # asked during the reset before episode 2's first tick
    assert [e["late_chunks"] for e in rep] == [0, 0]


def test_late_send_is_counted_in_its_episode():
    rep = episode_timing(fake_runner([]))
    assert [e["late_sends"] for e in rep] == [0, 1]
