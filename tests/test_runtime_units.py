"""Clock, chunk merging, safety, watchdog and wire format on hand-made inputs (no threads)."""

import numpy as np
import pytest

from robopolicy.errors import ConfigError
from robopolicy.runtime.chunks import ActionBuffer, TimedChunk, chunk_from_obs
from robopolicy.runtime.clock import FixedRateClock
from robopolicy.runtime.safety import SafetyLayer
from robopolicy.runtime.watchdog import Watchdog, WatchState
from robopolicy.runtime.wire import WireError, decode, encode


class FakeTime:
    """A clock that advances only when slept on (plus a fixed cost per read)."""

    def __init__(self, read_cost=1e-7):
        self.t = 100.0
        self.read_cost = read_cost

    def __call__(self):
        self.t += self.read_cost
        return self.t

    def sleep(self, s):
        self.t += s


# -- clock -------------------------------------------------------------------------------------
def test_clock_absolute_schedule_no_drift():
    ft = FakeTime(read_cost=1e-6)
    clock = FixedRateClock(100.0, spin_s=0.0005, time_fn=ft, sleep=ft.sleep)
    clock.start()
    work = [0.003, 0.0071, 0.0005, 0.0099] * 2500  # loop work varies, always < one period
    for w in work:
        tick = clock.wait()
        ft.t += w
    # 10,000 ticks later the last tick is still on the grid: t0 + k * period (no accumulated drift).
    assert tick.index == len(work) - 1
    assert tick.target_s == pytest.approx(clock.t0 + tick.index * 0.01, abs=1e-9)
    assert 0 <= tick.error_s < 1e-5
    assert clock.overruns == 0


def test_clock_overrun_counted_not_absorbed():
    ft = FakeTime(read_cost=1e-7)
    clock = FixedRateClock(100.0, time_fn=ft, sleep=ft.sleep)
    clock.start()
    clock.wait()  # tick 0
    ft.t += 0.035  # the loop stalls for 3.5 periods
    tick = clock.wait()
    assert tick.skipped == 2 and clock.overruns == 2  # ticks 1, 2 skipped; tick 3 runs late
    assert tick.index == 3
    assert tick.error_s == pytest.approx(0.005, abs=1e-5)
    nxt = clock.wait()
    assert nxt.index == 4 and nxt.target_s == pytest.approx(clock.t0 + 0.04, abs=1e-9)  # back on the grid


def test_clock_real_time_keeps_rate():
    clock = FixedRateClock(200.0)
    clock.start()
    ticks = [clock.wait() for _ in range(60)]
    idx = [t.index for t in ticks]
    # On a loaded machine some ticks may be missed; they are skipped and counted, never absorbed:
    # every tick stays on the absolute schedule start + index / rate.
    assert all(b > a for a, b in zip(idx, idx[1:]))
    assert clock.overruns >= idx[-1] - idx[0] - 59
    for t in ticks:
        assert t.target_s - ticks[0].target_s == pytest.approx((t.index - idx[0]) / 200.0, abs=1e-9)
    assert all(t.error_s >= 0 for t in ticks)


# -- chunks ------------------------------------------------------------------------------------
def _buf(merge, **kw):
    b = ActionBuffer(0.1, merge=merge, **kw)
    b.set_grid(0.0, 0)
    return b


def _chunk(t0, values, seq, dt=0.1):
    return TimedChunk(np.array(values, np.float32)[:, None], t0_s=t0, dt_s=dt, seq=seq)


def test_stale_actions_dropped_never_executed():
    b = _buf("latest")
    b.pop(0, 0.0)
    b.pop(1, 0.1)
    b.pop(2, 0.2)  # ticks 0..2 have passed
    dropped = b.add(_chunk(0.0, [1, 2, 3, 4, 5], seq=1))  # planned from an old observation (t = 0)
    assert dropped == 3 and b.stale_dropped == 3
    assert b.pop(3, 0.3)[0] == 4
    assert b.pop(4, 0.4)[0] == 5
    assert b.pop(5, 0.5) is None
    assert b.stale_executed == 0


def test_skipped_ticks_drop_their_slots():
    b = _buf("latest")
    b.add(_chunk(0.0, [1, 2, 3, 4], seq=1))
    assert b.pop(0)[0] == 1
    assert b.pop(3)[0] == 4  # slots 1, 2 skipped: forgotten, not executed late
    assert b.pop(1) is None and b.pop(2) is None


def test_merge_latest_average_ensemble():
    old = _chunk(0.0, [0, 0, 0, 0], seq=1)
    new = _chunk(0.2, [10, 10, 10], seq=2)  # overlaps slots 2, 3
    got = {}
    for rule in ("latest", "average", "ensemble"):
        b = _buf(rule, new_weight=0.25, ensemble_m=np.log(4.0))
        b.add(old)
        b.add(new)
        got[rule] = [b.pop(k)[0] for k in range(5)]
    assert got["latest"] == [0, 0, 10, 10, 10]
    assert got["average"] == pytest.approx([0, 0, 2.5, 2.5, 10])  # 0.75 * old + 0.25 * new
    # ACT weights exp(-m * j), oldest j = 0: w = [1, 1/4] -> (0 * 1 + 10 * 0.25) / 1.25 = 2
    assert got["ensemble"] == pytest.approx([0, 0, 2, 2, 10])


def test_coarse_policy_dt_spans_several_ticks():
    b = _buf("latest")
    b.add(_chunk(0.0, [1, 2], seq=1, dt=0.3))  # each action covers 3 ticks of 0.1 s
    out = [b.pop(k) for k in range(7)]
    assert [None if a is None else a[0] for a in out] == [1, 1, 1, 2, 2, 2, None]


def test_chunk_timestamps_and_committed_prefix():
    c = chunk_from_obs(np.arange(4, dtype=np.float32)[:, None], t_obs_s=1.0, dt_s=0.1, offset=1.0)
    assert c.times() == pytest.approx([1.1, 1.2, 1.3, 1.4])
    b = ActionBuffer(0.1)
    b.set_grid(1.0, 0)
    b.add(c)
    pre = b.committed(1.1, 0.1, 3)
    assert pre[:, 0] == pytest.approx([0, 1, 2])
    assert b.committed(1.5, 0.1, 3) is None


def test_unknown_merge_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="runner.merge"):
        ActionBuffer(0.1, merge="median")


# -- safety ------------------------------------------------------------------------------------
def test_safety_clip_delta_nan():
    s = SafetyLayer([-1, -1], [1, 1], max_delta=0.5)
    hold = np.zeros(2, np.float32)
    a, k = s.apply(np.array([3.0, -0.2]), None, hold)
    assert k == ["clip"] and a == pytest.approx([1.0, -0.2])
    a, k = s.apply(np.array([-1.0, -0.2]), None, hold)  # jump of 2.0 > 0.5 per step
    assert k == ["delta"] and a == pytest.approx([0.5, -0.2])
    a, k = s.apply(np.array([np.nan, 0.0]), None, np.array([0.5, -0.2], np.float32))
    assert k == ["nonfinite"] and a == pytest.approx([0.5, -0.2])
    a, k = s.apply(np.array([np.inf, 0.0]), None, np.array([0.5, -0.2], np.float32))
    assert "nonfinite" in k and np.all(np.isfinite(a))
    assert s.counts["clip"] == 1 and s.counts["delta"] == 1 and s.counts["nonfinite"] == 2


def test_safety_workspace_absolute_and_delta():
    ws = {"low": [0, 0], "high": [1, 1], "action_dims": [0, 1], "mode": "absolute"}
    s = SafetyLayer([-5, -5, -1], [5, 5, 1], workspace=ws)
    a, k = s.apply(np.array([2.0, 0.5, 0.3]), None, np.zeros(3))
    assert k == ["workspace"] and a == pytest.approx([1.0, 0.5, 0.3])
    wsd = {"low": [0, 0, 0], "high": [1, 1, 1], "action_dims": [0, 1, 2], "mode": "delta", "ee_key": "hand", "scale": 0.1}
    s = SafetyLayer([-1] * 4, [1] * 4, workspace=wsd)
    obs = {"hand": np.array([0.95, 0.5, 0.5], np.float32)}
    a, k = s.apply(np.array([1.0, 0.0, 0.0, 1.0]), obs, np.zeros(4))  # would reach x = 1.05
    assert k == ["workspace"] and a[0] == pytest.approx(0.5, abs=1e-5) and a[3] == 1.0
    a, k = s.apply(np.array([-1.0, 0.0, 0.0, 0.0]), obs, np.zeros(4))  # moving inwards is fine
    assert k == []


def test_safety_rejects_bad_workspace():
    with pytest.raises(ConfigError):
        SafetyLayer([-1, -1], [1, 1], workspace={"low": [0], "high": [1, 1], "action_dims": [0, 1]})


# -- watchdog ----------------------------------------------------------------------------------
def test_watchdog_hold_then_stop_then_resume():
    w = Watchdog(0.2, 1.0)
    w.arm(0.0)
    assert w.check(0.19) is WatchState.OK
    assert w.check(0.21) is WatchState.HOLD and w.trips == 1
    w.feed(0.3)
    assert w.check(0.31) is WatchState.OK
    assert w.check(1.29) is WatchState.HOLD and w.trips == 2
    assert w.check(1.31) is WatchState.STOP and w.stops == 1
    w.feed(1.4)
    assert w.check(1.41) is WatchState.STOP  # a stop is final


# -- wire --------------------------------------------------------------------------------------
def test_wire_roundtrip_and_rejects():
    arrays = {"obs/img": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "x": np.linspace(0, 1, 5, dtype=np.float32)}
    frames = [bytes(f) for f in encode({"op": "infer", "id": 3}, arrays)]
    h, out = decode(frames)
    assert h["op"] == "infer" and h["id"] == 3
    for k, v in arrays.items():
        assert out[k].dtype == v.dtype and np.array_equal(out[k], v)
    with pytest.raises(WireError):
        encode({}, {"o": np.array([object()])})
    # wire v2: frames = [tag, token, header, *buffers]
    bad = [*frames[:2], frames[2].replace(b'"|u1"', b'"|O"'), *frames[3:]]
    with pytest.raises(WireError):
        decode(bad)
    with pytest.raises(WireError):
        decode([*frames[:3], frames[3][:-1], frames[4]])  # truncated buffer
