"""Conformance check of a robot adapter against what the runner relies on.

:func:`check_robot` connects, samples ``get_observation`` and ``send_action`` at the control rate
for a short while (sending only the hold action), probes the action bounds once beyond each side,
then disconnects, calls the robot while disconnected and reconnects. Each check yields a
:class:`CheckResult`: passed or not, what was measured, and for a failure one sentence saying how to
fix the adapter. The checks, in order:

``connect``, ``obs keys``, ``obs shapes/dtypes``, ``obs finite``, ``timestamps measured`` (monotonic
seconds from the time of the call, not in the future, not older than ``max_obs_age_s``),
``timestamps monotonic`` (never backwards, advancing with time), ``get_observation latency`` and
``send_action latency`` (p99 within ``latency_fraction`` of the control period), ``send_action
returns`` (the action actually sent: float32 (A,) within bounds), ``clipping`` (commands beyond the
bounds come back clipped), ``hold action`` (within bounds, zero where held at zero, accepted),
``disconnect`` (idempotent; calls afterwards raise promptly instead of returning data or hanging),
``reconnect``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from robopolicy.runtime.clock import FixedRateClock, now
from robopolicy.runtime.robot import Robot


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool | None  # None: skipped (an earlier check failed)
    detail: str
    fix: str = ""


FIXES = {
    "connect": "Make connect() open the link without raising (check the address, cables and permissions).",
    "obs keys": "Return exactly the observation keys the robot's spec declares, or change the spec in its config.",
    "obs shapes/dtypes": "Return every observation as an np.ndarray of its declared shape and dtype "
                         "(np.asarray(x, np.float32) for low-dim keys, uint8 (H, W, 3) for cameras), or fix the spec.",
    "obs finite": "Replace or reject NaN/inf sensor readings in get_observation before returning them.",
    "timestamps measured": "Stamp each observation with time.monotonic() taken when it was measured "
                           "(not time.time(), not milliseconds, not a constant).",
    "timestamps monotonic": "Take the observation timestamp from time.monotonic() at measurement so that it never "
                            "goes backwards and advances with time.",
    "get_observation latency": "Make get_observation return the latest sensor values without waiting for new ones "
                               "(read the hardware in a background thread).",
    "send_action latency": "Make send_action non-blocking: hand the command to the controller and return, "
                           "without waiting for the motion to finish.",
    "send_action returns": "Return the action actually sent from send_action, as a float32 array of shape (A,) within the bounds.",
    "clipping": "Clip every command to the action bounds in send_action (np.clip(a, self.low, self.high)) "
                "and return the clipped action.",
    "hold action": "Declare hold modes that keep the robot still ('zero' for velocity commands, 'last' for position "
                   "targets) and accept the hold action in send_action.",
    "disconnect": "Make disconnect() idempotent and make get_observation/send_action raise NotConnectedError after it "
                  "instead of returning stale data or blocking.",
    "reconnect": "Make connect() work again after disconnect() (open a new link instead of reusing the closed one).",
}
ORDER = tuple(FIXES)


def _result(name: str, passed: bool, detail: str) -> CheckResult:
    return CheckResult(name, passed, detail, "" if passed else FIXES[name])


def _fmt(a) -> str:
    return "[" + ", ".join(f"{float(x):.4g}" for x in np.ravel(a)) + "]"


def _percentile_ms(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q)) if xs else float("nan")


def _call_with_timeout(fn: Callable[[], object], timeout_s: float) -> tuple[str, object]:
    """("returned", value) | ("raised", exception) | ("hung", None) within ``timeout_s``."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except Exception as e:  # noqa: BLE001 - any clean failure is what we want to see
            out["error"] = e

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(timeout_s)
    if th.is_alive():
        return "hung", None
    return ("raised", out["error"]) if "error" in out else ("returned", out.get("value"))


def _obs_problems(robot: Robot, obs) -> tuple[str | None, str | None, str | None]:
    """(keys problem, shape/dtype problem, finiteness problem) of one observation, None where fine."""
    spec = robot.obs_spec
    if not isinstance(obs, dict):
        return f"get_observation returned {type(obs).__name__}, not (dict, float)", None, None
    missing, extra = sorted(set(spec.obs) - set(obs)), sorted(set(obs) - set(spec.obs))
    keys = f"missing {missing}, extra {extra}" if missing or extra else None
    shapes = finite = None
    for k, ks in spec.obs.items():
        if k not in obs:
            continue
        v = obs[k]
        if not isinstance(v, np.ndarray) or tuple(v.shape) != tuple(ks.shape) or v.dtype != np.dtype(ks.dtype):
            got = f"{np.asarray(v).dtype} {tuple(np.shape(v))}" if isinstance(v, np.ndarray) else type(v).__name__
            shapes = shapes or f"{k!r} is {got}, declared {ks.dtype} {tuple(ks.shape)}"
        elif v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            finite = finite or f"{k!r} holds NaN/inf"
    return keys, shapes, finite


def check_robot(robot: Robot, rate_hz: float, samples: int, latency_fraction: float, max_obs_age_s: float,
                bound_margin: float, probe_clipping: bool, call_timeout_s: float) -> list[CheckResult]:
    """Run every check on ``robot`` (not yet connected); it is left disconnected.

    rate_hz: the control rate to judge latency against; samples: ticks of observation/action
    sampling; latency_fraction: the p99 of each call must be below this share of the period;
    max_obs_age_s: oldest acceptable observation stamp relative to the call; bound_margin: the
    clipping probe commands this share of the range beyond each bound; call_timeout_s: how long a
    call after disconnect may take to fail.
    """
    results: list[CheckResult] = []
    period_s = 1.0 / rate_hz
    budget_ms = latency_fraction * period_s * 1e3
    aspec = robot.action_spec
    try:
        robot.connect()
    except Exception as e:  # noqa: BLE001
        return [_result("connect", False, f"connect() raised {type(e).__name__}: {e}")] + _skipped(ORDER[1:])
    results.append(_result("connect", True, "connected"))

    # -- sampling at the control rate, sending only the hold action -------------------------------
    obs_ms, send_ms, stamps, calls, sent_back, problems = [], [], [], [], [], [None, None, None]
    last, failure = None, None
    clock = FixedRateClock(rate_hz)
    clock.start()
    for _ in range(samples):
        clock.wait()
        t0 = now()
        try:
            out = robot.get_observation()
        except Exception as e:  # noqa: BLE001
            failure = f"get_observation() raised {type(e).__name__}: {e}"
            break
        t1 = now()
        obs, t_obs = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
        obs_ms.append(t1 - t0)
        stamps.append(t_obs)
        calls.append((t0, t1))
        for i, p in enumerate(_obs_problems(robot, obs)):
            problems[i] = problems[i] or p
        hold = robot.hold_action(last)
        t2 = now()
        try:
            sent = robot.send_action(hold)
        except Exception as e:  # noqa: BLE001
            failure = f"send_action() raised {type(e).__name__}: {e}"
            break
        send_ms.append(now() - t2)
        sent_back.append((hold, sent))
        last = sent if isinstance(sent, np.ndarray) and sent.shape == aspec.shape else hold
    if failure is not None:
        results.append(CheckResult("obs keys", False, failure, "Make get_observation and send_action work while "
                                   "connected (see the error) and run the check again."))
        _safe_disconnect(robot)
        return results + _skipped(ORDER[2:])

    results.append(_result("obs keys", problems[0] is None, problems[0] or f"{sorted(robot.obs_spec.obs)}"))
    results.append(_result("obs shapes/dtypes", problems[1] is None, problems[1] or "as declared"))
    results.append(_result("obs finite", problems[2] is None, problems[2] or "all finite"))
    results.append(_check_stamps_measured(stamps, calls, max_obs_age_s))
    results.append(_check_stamps_monotonic(stamps, calls))
    results.append(_latency("get_observation latency", obs_ms, budget_ms))
    results.append(_latency("send_action latency", send_ms, budget_ms))
    results.append(_check_returns(sent_back, aspec))
    results.append(_check_clipping(robot, last, bound_margin) if probe_clipping
                   else CheckResult("clipping", None, "not probed (probe_clipping=false)"))
    results.append(_check_hold(robot, last))
    results.append(_check_disconnect(robot, call_timeout_s))
    results.append(_check_reconnect(robot))
    return results


def _skipped(names) -> list[CheckResult]:
    return [CheckResult(n, None, "skipped: an earlier check failed") for n in names]


def _safe_disconnect(robot: Robot) -> None:
    try:
        robot.disconnect()
    except Exception:  # noqa: BLE001 - already reporting a failure
        pass


def _check_stamps_measured(stamps, calls, max_age_s: float) -> CheckResult:
    name = "timestamps measured"
    if any(not isinstance(t, (float, int, np.floating)) or isinstance(t, bool) for t in stamps):
        return _result(name, False, "get_observation did not return (obs, t) with a number t")
    ages = [t1 - t for t, (_, t1) in zip(stamps, calls)]
    future = [t - t1 for t, (_, t1) in zip(stamps, calls) if t > t1]
    if future:
        return _result(name, False, f"stamps up to {max(future):.3g} s ahead of time.monotonic()")
    if max(ages) > max_age_s:
        return _result(name, False, f"stamps up to {max(ages):.3g} s old (limit {max_age_s:g} s)")
    return _result(name, True, f"age p50 {_percentile_ms(ages, 50):.2f} ms, max {max(ages) * 1e3:.2f} ms")


def _check_stamps_monotonic(stamps, calls) -> CheckResult:
    name = "timestamps monotonic"
    if any(not isinstance(t, (float, int, np.floating)) or isinstance(t, bool) for t in stamps):
        return _result(name, False, "no numeric timestamps")
    diffs = np.diff(np.asarray(stamps, np.float64))
    if np.any(diffs < 0):
        return _result(name, False, f"{int(np.sum(diffs < 0))} of {len(diffs)} stamps go backwards (by up to {-diffs.min() * 1e3:.2f} ms)")
    wall_s = calls[-1][0] - calls[0][0]
    if len(stamps) > 1 and stamps[-1] - stamps[0] < 0.5 * wall_s:
        return _result(name, False, f"stamps advanced {stamps[-1] - stamps[0]:.3g} s over {wall_s:.3g} s of calls")
    return _result(name, True, f"{len(stamps)} stamps, never backwards")


def _latency(name: str, xs: list[float], budget_ms: float) -> CheckResult:
    p50, p99 = _percentile_ms(xs, 50), _percentile_ms(xs, 99)
    return _result(name, p99 <= budget_ms, f"p50 {p50:.3f} ms, p99 {p99:.3f} ms (budget {budget_ms:.2f} ms)")


def _check_returns(sent_back, aspec) -> CheckResult:
    name = "send_action returns"
    for _cmd, sent in sent_back:
        if not isinstance(sent, np.ndarray) or sent.shape != aspec.shape or sent.dtype != np.dtype(aspec.dtype):
            got = f"{sent.dtype} {sent.shape}" if isinstance(sent, np.ndarray) else type(sent).__name__
            return _result(name, False, f"returned {got}, expected {aspec.dtype} {aspec.shape}")
        if not np.all(np.isfinite(sent)) or not aspec.contains(sent):
            return _result(name, False, f"returned {_fmt(sent)} outside the bounds for a command within them")
    return _result(name, True, f"{aspec.dtype} {aspec.shape}")


def _check_clipping(robot: Robot, last, margin: float) -> CheckResult:
    aspec = robot.action_spec
    span = aspec.high_array - aspec.low_array
    try:
        for probe in (aspec.high_array + margin * span, aspec.low_array - margin * span):
            sent = robot.send_action(probe.astype(aspec.dtype))
            if not isinstance(sent, np.ndarray) or not aspec.contains(sent):
                robot.send_action(robot.hold_action(last))
                shown = _fmt(sent) if isinstance(sent, np.ndarray) else repr(sent)
                return _result("clipping", False, f"command {_fmt(probe)} came back as {shown}")
        robot.send_action(robot.hold_action(last))
    except Exception as e:  # noqa: BLE001
        return _result("clipping", False, f"send_action raised {type(e).__name__} for a command beyond the bounds: {e}")
    return _result("clipping", True, f"commands {margin:g} x range beyond each bound come back within bounds")


def _check_hold(robot: Robot, last) -> CheckResult:
    aspec = robot.action_spec
    for base in (None, last):
        hold = robot.hold_action(base)
        if not isinstance(hold, np.ndarray) or hold.shape != aspec.shape or not aspec.contains(hold):
            return _result("hold action", False, f"hold_action({'None' if base is None else 'last'}) gave {hold!r}")
        if np.any(hold[aspec.zero_dims] != 0):
            return _result("hold action", False, f"dims {np.flatnonzero(aspec.zero_dims).tolist()} are held at zero but hold_action gave {_fmt(hold)}")
    try:
        sent = robot.send_action(robot.hold_action(last))
    except Exception as e:  # noqa: BLE001
        return _result("hold action", False, f"send_action(hold) raised {type(e).__name__}: {e}")
    return _result("hold action", True, f"modes {list(aspec.hold)}, sent {_fmt(sent)}")


def _check_disconnect(robot: Robot, timeout_s: float) -> CheckResult:
    name = "disconnect"
    try:
        robot.disconnect()
        robot.disconnect()
    except Exception as e:  # noqa: BLE001
        return _result(name, False, f"disconnect() raised {type(e).__name__}: {e} (it must be idempotent)")
    hold = robot.action_spec.hold_action(None)
    for call, fn in (("get_observation", robot.get_observation), ("send_action", lambda: robot.send_action(hold))):
        outcome, _ = _call_with_timeout(fn, timeout_s)
        if outcome == "hung":
            return _result(name, False, f"{call}() after disconnect() did not return within {timeout_s:g} s")
        if outcome == "returned":
            return _result(name, False, f"{call}() after disconnect() returned data instead of raising")
    return _result(name, True, "idempotent; calls afterwards raise")


def _check_reconnect(robot: Robot) -> CheckResult:
    try:
        robot.connect()
        obs, _ = robot.get_observation()
        robot.send_action(robot.hold_action(None))
        keys = sorted(obs)
    except Exception as e:  # noqa: BLE001
        _safe_disconnect(robot)
        return _result("reconnect", False, f"after connect() again: {type(e).__name__}: {e}")
    _safe_disconnect(robot)
    return _result("reconnect", True, f"observation {keys} after reconnecting")


def format_table(results: list[CheckResult]) -> str:
    """The pass/fail table, then one fix per failure."""
    w = max(len(r.name) for r in results)
    mark = {True: "PASS", False: "FAIL", None: "skip"}
    lines = [f"{'check':<{w}}  result  detail", f"{'-' * w}  ------  ------"]
    lines += [f"{r.name:<{w}}  {mark[r.passed]:<6}  {r.detail}" for r in results]
    failed = [r for r in results if r.passed is False]
    if failed:
        lines += ["", "fixes:"] + [f"- {r.name}: {r.fix}" for r in failed]
    return "\n".join(lines)


def passed(results: list[CheckResult]) -> bool:
    """True when no check failed (skipped ones count only with a failure before them)."""
    return not any(r.passed is False for r in results)

