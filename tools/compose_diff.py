"""Are two code trees' composed configs value-identical? Composes every command (and the main group
choices) with Hydra's compose API once per tree, in a subprocess with that tree first on PYTHONPATH,
and prints every key whose value differs (resolved, and as written with its interpolations).

    python tools/compose_diff.py /work/wt/typedcfg-base /work/wt/typedcfg      # before, after
    python tools/compose_diff.py BASE NEW --json out.json                      # also keep both dumps
    python tools/compose_diff.py BASE NEW --fill-legacy                        # old encoder defaults made explicit first

``--fill-legacy`` fills the *before* configs' missing encoder settings from conf/legacy/encoder.yaml
(robopolicy.utils.legacy, as loading an old run does; run the tool with the new tree's code): then
"identical" means every key the new tree adds carries the value the old code defaulted.

Exit status 0 when the commands that must not change (train, quickstart, deploy, with every
choice below) are identical, 1 otherwise; differences of the other commands are printed as well.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REQUIRED = ("train", "quickstart", "deploy")
CASES = {
    "train": [[]] + [[f"policy={p}"] for p in ("bc", "diffusion", "consistency")] + [[f"net={n}"] for n in ("mlp", "transformer")]
    + [[f"task={t}"] for t in ("multimodal", "planar_push", "dataset")] + [["+encoder@policy.encoder=small_cnn", "task.obs=visuomotor"]],
    "quickstart": [[], ["task.env_name=reach-v3"]],
    "deploy": [[], ["runner=eval_match"], ["robot=point"]],
    "train_critic": [[], ["critic=calql"]],
    "eval": [[], ["steer=vgps"]],
    "collect": [[]], "semantics": [[]], "policy_server": [[]], "record": [[]], "check_robot": [[]],
}
MANDATORY = {"train": ["dataset=d.zarr", "run_dir=r"], "quickstart": [], "deploy": ["run_dir=r"], "train_critic": ["dataset=d.zarr", "run_dir=r"],
             "eval": ["run_dir=r"], "collect": [], "semantics": [], "policy_server": ["run_dir=r"], "record": ["out=o.zarr"], "check_robot": []}

DUMP = r"""
import json, sys
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from robopolicy import resources
cases = json.loads(sys.argv[1])
out = {}
with initialize_config_dir(config_dir=str(resources.conf_dir()), version_base="1.3"):
    for name, overrides in cases:
        cfg = compose(name, overrides=overrides)
        key = " ".join([name] + overrides)
        raw = OmegaConf.to_container(cfg, resolve=False)
        raw.pop("sweep_dir", None)  # ${now:...}: differs from second to second
        resolved = OmegaConf.to_container(OmegaConf.create(raw), resolve=True, throw_on_missing=False)
        out[key] = {"raw": raw, "resolved": resolved}
print(json.dumps(out, sort_keys=True, default=str))
"""


def dump(tree: str) -> dict:
    cases = [(name, MANDATORY[name] + extra) for name, extras in CASES.items() for extra in extras]
    env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1"}
    env.pop("ROBOPOLICY_CONFIG_DIR", None)
    proc = subprocess.run([sys.executable, "-c", DUMP, json.dumps(cases)], env=env, cwd=tree, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"composing with {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a:
                out.append(f"{path}{k}: only after ({json.dumps(b[k])})")
            elif k not in b:
                out.append(f"{path}{k}: only before ({json.dumps(a[k])})")
            else:
                out += diff(a[k], b[k], f"{path}{k}.")
        return out
    return [] if a == b and type(a) is type(b) else [f"{path.rstrip('.')}: {a!r} -> {b!r}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--json", default=None, help="write both dumps here")
    ap.add_argument("--fill-legacy", action="store_true", help="fill the before configs' missing encoder settings from conf/legacy/ first")
    a = ap.parse_args()
    before, after = dump(os.path.abspath(a.before)), dump(os.path.abspath(a.after))
    if a.fill_legacy:
        from omegaconf import OmegaConf

        from robopolicy.utils.legacy import fill_legacy_settings

        before = {case: {kind: OmegaConf.to_container(fill_legacy_settings(OmegaConf.create(cfg)), resolve=False)
                         for kind, cfg in dumps.items()} for case, dumps in before.items()}
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"before": before, "after": after}, f, indent=1, sort_keys=True)
    bad = 0
    for case in sorted(set(before) | set(after)):
        d = diff(before.get(case, {}), after.get(case, {}))
        status = "identical" if not d else f"{len(d)} difference(s)"
        print(f"{case}: {status}")
        for line in d:
            print(f"    {line}")
        if d and case.split()[0] in REQUIRED:
            bad += 1
    print(f"{len(before)} compositions compared; {bad} of the required commands differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
