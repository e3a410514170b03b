"""Pair augmentation (Sato et al. 2023): one annotated frame labels the rest of its segment.

From an annotated frame, set the simulator to its semantics and replay the logged actions through
the simulator's transition function T(s, a); the simulated semantics label the following frames.
A transition-noise model adds Gaussian noise (in the semantics' units, one value or one per
dimension) to the state after every simulated step, and the noisy state is what the next step
starts from, so its error accumulates as a mismatched simulator's would. ``semantics.transition_noise``
gives it as a fraction of each dimension's range per step (:func:`robopolicy.semantics.noise.range_std`).
A :class:`~robopolicy.semantics.dynamics.DynamicsGate` ends a segment where the label would depend on the object's
unknown mass or friction (``semantics.augment_dynamics``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from robopolicy.errors import ConfigError
from robopolicy.semantics.data import RealEpisodes
from robopolicy.semantics.dynamics import DynamicsGate
from robopolicy.semantics.noise import check_std

# follow(sim_env, readings (T, P), actions (T, A), t, k): before replay step k of a segment annotated at frame t
FollowReading = Callable[[Any, np.ndarray, np.ndarray, int, int], None]


def propagate(sim_env, s0: np.ndarray, actions: np.ndarray, transition_noise_std: float | np.ndarray = 0.0,
              rng: np.random.Generator | None = None, before_step: Callable[[Any, int], None] | None = None) -> np.ndarray:
    """s0: (D,), actions: (L, A) -> (L + 1, D) float32 semantics s0, T(s0 + e0, a0), ... through ``sim_env``.

    transition_noise_std: () or (D,); each step starts from the previous simulated state plus
    e_k ~ N(0, std^2) drawn from ``rng`` (required when the noise is on). s0 itself stays as given.
    before_step(sim, k): called before step k, once the simulator holds its state (the reading follower).
    """
    std = check_std(transition_noise_std, "transition noise")
    noisy = bool(np.any(std > 0))
    if noisy and rng is None:
        raise ConfigError("Transition noise needs a generator; pass rng (the loop's own transition-noise generator).")
    sim = sim_env.unwrapped
    out = [np.asarray(s0, dtype=np.float32)]
    for k, a in enumerate(np.asarray(actions)):
        s = out[-1]
        if noisy:
            s = s + (rng.standard_normal(s.shape) * std).astype(np.float32)
        sim.set_semantics(s)
        if before_step is not None:
            before_step(sim, k)
        sim.step(a)
        out.append(sim.get_semantics())
    return np.stack(out).astype(np.float32)


class LabelSet:
    """Labels of the offline frames: from annotations and from pair augmentation.

    ``labels`` (N, D) float32 and ``age`` (N,) int: steps since the annotation a label comes from
    (0 = annotated, -1 = unlabeled). A frame covered twice keeps the label of its nearest annotation.
    """

    def __init__(self, data: RealEpisodes, dim: int):
        self.data = data
        self.labels = np.zeros((data.n_frames, dim), np.float32)
        self.age = np.full(data.n_frames, -1, dtype=int)
        self.annotated: list[int] = []

    @property
    def labeled(self) -> np.ndarray:
        return np.flatnonzero(self.age >= 0)

    def add(self, frame: int, semantics: np.ndarray, sim_env=None, segment_length: int = 1,
            transition_noise_std: float | np.ndarray = 0.0, rng: np.random.Generator | None = None,
            gate: DynamicsGate | None = None, follow: FollowReading | None = None) -> np.ndarray:
        """Record an annotation of ``frame``; with ``segment_length`` L > 1 label up to L - 1 following frames
        (with ``gate``, only those before the first one other object dynamics would move; its replays have no
        transition noise, so they measure the dynamics alone). ``follow``: the task's
        :meth:`~robopolicy.semantics.tasks.SemanticsTask.follow_reading`, which keeps the replay's robot on the
        episode's recorded reading (needs ``data.proprio``).

        Returns the ids of the frames labelled by this call.
        """
        if segment_length < 1:
            raise ConfigError(f"segment_length={segment_length} must be at least 1; set semantics.segment_length.")
        if segment_length > 1 and sim_env is None:
            raise ConfigError("Pair augmentation needs the simulator; pass sim_env or use segment_length=1.")
        e, t = int(self.data.episode_of[frame]), int(self.data.t_of[frame])
        acts = self.data.actions[e][t : t + segment_length - 1]
        before_step = None
        if follow is not None and len(acts):
            if self.data.proprio is None:
                raise ConfigError("Following the robot's reading in pair augmentation needs the reading with every offline "
                                  "frame; these episodes have none: collect them again (a new cache_dir).")
            readings, episode_actions = self.data.proprio[e], self.data.actions[e]

            def before_step(sim, k):
                follow(sim, readings, episode_actions, t, k)
        seq = (propagate(sim_env, semantics, acts, transition_noise_std, rng, before_step) if len(acts)
               else np.asarray(semantics, np.float32)[None])
        if gate is not None and len(acts):
            def replay():
                return propagate(sim_env, semantics, acts, before_step=before_step)
            reference = seq if not np.any(np.asarray(transition_noise_std) > 0) else replay()
            seq = seq[: gate.kept(frame, reference, replay)]
        ids = frame + np.arange(len(seq))
        for k, (i, s) in enumerate(zip(ids, seq)):
            if self.age[i] < 0 or k < self.age[i]:
                self.labels[i] = s
                self.age[i] = k
        self.annotated.append(int(frame))
        return ids
