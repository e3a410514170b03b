"""How far pair augmentation's labels are from the truth: the annotations of a run's labelled set (its ``labels.npz``)
carried through the simulator again, in each augmentation setting, against the true semantics of the offline frames.

    python tools/semantics_label_error.py --labels RUN/<strategy>/round_01/labels.npz -- \
        +experiment=semantics_metaworld_push cache_dir=experiments/mwfollow/cache     # the mode=active run's overrides

Per labels file and setting (from rest: Sato et al.'s replay; following the robot's reading; each with the dynamics
gate of ``augment_dynamics``, ``--gate-samples`` replays; with ``--real-dynamics`` also each replay in a simulator given
the real scene's object mass and friction, which tells how much of the error is the dynamics gap), the augmented
frames (not the annotated ones) and, per group of coordinates the mapper learns, the mean, 90th percentile and share
above ``--far-cm`` of the label error. The annotations are the truth here (an exact oracle), so the figures are the
augmentation's alone.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def label_error_rows(task, data, truth: np.ndarray, annotated: np.ndarray, sim, segment_length: int, settings: dict,
                     groups: list[str], far_m: float) -> list[dict]:
    """One row per setting name -> (gate, follow, dynamics): augmented frames and the error of each group over them.
    ``dynamics``: None, or (ObjectDynamics of ``sim``, mass scale, friction scale) set for this setting's replays."""
    from robopolicy.semantics.augment import LabelSet

    rows = []
    for name, (gate, follow, dynamics) in settings.items():
        labels = LabelSet(data, truth.shape[1])
        sim.reset(seed=0)  # the simulator keeps hidden state between replays; each setting starts from the same one
        if dynamics is not None:
            dynamics[0].scale(*dynamics[1:])
        try:
            for f in annotated:
                labels.add(int(f), truth[f], sim, segment_length, gate=gate, follow=follow)
        finally:
            if dynamics is not None:
                dynamics[0].scale(1.0, 1.0)
        aug = labels.age > 0
        row = {"setting": name, "augmented": int(aug.sum())}
        errs = task.group_errors(labels.labels[aug], truth[aug])
        for g in groups:
            e = errs[g]
            row[g] = {"mean_cm": 100 * float(e.mean()), "p90_cm": 100 * float(np.quantile(e, 0.9)), "far": float((e > far_m).mean())}
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", nargs="+", required=True, help="labels.npz files of mode=active runs of this setting")
    ap.add_argument("--gate-samples", type=int, default=4, help="replays of the dynamics gate rows (0: no gate rows)")
    ap.add_argument("--far-cm", type=float, default=2.0, help="the share of labels off by more than this is reported")
    ap.add_argument("--real-dynamics", action="store_true",
                    help="also each setting in a simulator with the real scene's object mass and friction (real_env)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robopolicy.cli._hydra import CONF_DIR
    from robopolicy.errors import ConfigError
    from robopolicy.semantics import experiment as ex

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("semantics", overrides=list(args.overrides) + [f"augment_dynamics.samples={max(args.gate_samples, 0)}"])
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    task = ex._task(cfg)
    cfg = ex._checked(cfg, task, [])
    data, truths = ex.cached_episodes(cfg, "offline")
    truth = np.concatenate(truths)
    split = ex.semantics_split(task, ex.proprio_names(cfg))
    learned = set(split.predicted_names) if split is not None else set(task.names)
    groups = [g for g, (sl, _) in task.groups.items() if learned & set(task.names[sl])]
    sim = task.make_sim()
    sim.reset(seed=int(cfg.seed))
    gate = ex.dynamics_gate(cfg, task, sim, OmegaConf.to_container(cfg.real_env, resolve=True), split)
    real = OmegaConf.to_container(cfg.real_env, resolve=True)
    settings = {"from rest": (None, None, None)}
    if task.follow_reading is not None:
        settings["following the reading"] = (None, task.follow_reading, None)
    if gate is not None:
        settings.update({f"{k} + dynamics gate": (gate, f, None) for k, (_, f, _) in list(settings.items())})
    if args.real_dynamics:
        dyn = (task.object_dynamics(sim, real), float(real["mass_scale"]), float(real["friction_scale"]))
        settings.update({f"{k}, real object dynamics": (g, f, dyn) for k, (g, f, _) in list(settings.items()) if g is None})
    for path in args.labels:
        z = np.load(path)
        if len(z["labels"]) != data.n_frames:
            raise ConfigError(f"{path} labels {len(z['labels'])} frames and this setting's offline data has {data.n_frames}; "
                              "pass the overrides of the run that wrote it (cache_dir included).")
        rows = label_error_rows(task, data, truth, z["annotated"], sim, int(cfg.segment_length), settings, groups,
                                args.far_cm / 100)
        print(f"{path}: {len(z['annotated'])} annotations, segment {cfg.segment_length}")
        for r in rows:
            cells = "  ".join(f"{g} {r[g]['mean_cm']:.2f} / {r[g]['p90_cm']:.2f} cm, {100 * r[g]['far']:.1f} % > {args.far_cm:g}"
                              for g in groups)
            print(f"  {r['setting']:<40} augmented {r['augmented']:>5}  {cells}")
    sim.close()


if __name__ == "__main__":
    main()
