"""Where a mapper is wrong, step by step: on the run's held-out episodes and in closed-loop transfer episodes.

    python tools/semantics_error_trace.py --mapper experiments/mwpin/ceil_false --episodes 6 --proprio hand_x hand_y hand_z gripper \
        --object object --effector hand -- cache_dir=experiments/mwpin/cache task=metaworld task.env_name=push-v3 ... (the run's overrides)

Held out (the cache's test episodes): per episode, the ``--object`` group's error at the first frame, over the first 10
frames and after them, the effector-object distance (xy) at the first frame and the share of frames where it is under
3 cm. Transfer (``--episodes`` episodes of ``transfer.seed``'s block, the run's controller): per episode, success,
the object error every 20 steps and the distance (xy) from the *predicted* object to the effector. A mapper that
has learned "the object is at the hand" shows a first-frame error close to the hand-object distance, and in transfer
a prediction that follows the hand. Pure reporting: nothing is written.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mapper", required=True, help="a mapper run folder (…/round_NN or a ceiling tool's --out)")
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--proprio", nargs="*", default=[])
    ap.add_argument("--object", default="object", help="the error group traced (planar push: puck)")
    ap.add_argument("--effector", default="hand", help="the robot's position group (planar push: pusher)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import numpy as np

    def cm(x):
        return [round(100 * float(v), 1) for v in x]

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.envs import make_task
    from robopolicy.evaluation.episodes import EpisodeHooks, episode_seeds, run_episode
    from robopolicy.semantics.experiment import cached_episodes, controller_for
    from robopolicy.semantics.mapper import load_mapper
    from robopolicy.semantics.proprio import semantics_split
    from robopolicy.semantics.tasks import semantics_task
    from robopolicy.semantics.transfer import MapperActor

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=list(args.overrides))
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    task = semantics_task(make_task(cfg.task))
    mapper, split = load_mapper(args.mapper), semantics_split(task, args.proprio)
    obj, eff = task.groups[args.object][0], task.groups[args.effector][0]
    k = int(cfg.mapper.n_frames)

    test, truths = cached_episodes(cfg, "test")
    for e, truth in enumerate(truths):
        ids = np.arange(test.start_of[e], test.start_of[e] + len(truth))
        pred = mapper.predict(test.stacked(ids, k), test.reading(ids))[0]
        full = split.assemble(pred, mapper.semantics_names, split.reading_from_truth(truth))
        err = np.linalg.norm(full[:, obj] - truth[:, obj], axis=1)
        gap = np.linalg.norm(truth[:, eff][:, :2] - truth[:, obj][:, :2], axis=1)
        print(f"held-out episode {e}: {len(truth)} frames, object error first frame {100 * err[0]:.1f} cm, first 10 "
              f"{100 * err[:10].mean():.1f}, after {100 * err[10:].mean():.1f}; effector-object xy at the first frame "
              f"{100 * gap[0]:.1f} cm, frames within 3 cm {np.mean(gap < 0.03):.2f}")

    actor = MapperActor(mapper, controller_for(cfg, task), k, split)
    if hasattr(actor.controller, "bind"):
        actor.controller.bind(task)
    rows: list[np.ndarray] = []

    class Trace(EpisodeHooks):
        def before_step(self, env, t, obs, action) -> None:
            if actor.last_pred is not None:
                rows.append(np.stack([actor.last_pred, env.true_semantics()]))

    env = task.make_real_env(**OmegaConf.to_container(cfg.real_env, resolve=True))
    try:
        for s in episode_seeds(int(cfg.transfer.seed), args.episodes):
            rows.clear()
            rec = run_episode(env, actor, s, stop_after_success=0, max_steps=env.max_episode_steps, hooks=[Trace()])
            r = np.stack(rows)
            pred, true = r[:, 0], r[:, 1]
            err = np.linalg.norm(pred[:, obj] - true[:, obj], axis=1)
            follow = np.linalg.norm(pred[:, obj][:, :2] - true[:, eff][:, :2], axis=1)
            near = np.linalg.norm(true[:, eff][:, :2] - true[:, obj][:, :2], axis=1) < 0.03
            print(f"transfer seed {s}: success {rec.success}, {rec.steps} steps, effector within 3 cm of the object on "
                  f"{int(near.sum())} steps; object error every 20 steps (cm) {cm(err[::20])}; "
                  f"predicted object to effector xy (cm) {cm(follow[::20])}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
