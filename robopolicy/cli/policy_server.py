"""``robopolicy-policy-server``: serve a trained policy over ZeroMQ (see conf/policy_server.yaml)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from robopolicy.cli._hydra import hydra_command


def load_for_serving(run_dir: str, checkpoint: str = "last", device: str = "auto", sampler: dict | None = None):
    """The run's policy on ``device``, sampler settings overridden (also the ServerProcess factory)."""
    from robopolicy import load

    overrides = {f"policy.sampler.{k}": v for k, v in (sampler or {}).items()}
    return load(run_dir, checkpoint=checkpoint, device=device, overrides=overrides or None)


@hydra_command("policy_server")
def main(cfg: DictConfig) -> None:
    from robopolicy.runtime.server import PolicyServer

    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sampler = OmegaConf.to_container(cfg.policy.sampler, resolve=True) if cfg.get("policy") else {}
    policy = load_for_serving(cfg.run_dir, cfg.checkpoint, cfg.device, sampler)
    server = PolicyServer(policy, bind=cfg.bind, token=cfg.token, torch_threads=cfg.torch_threads)
    print(f"serving {cfg.run_dir} on {server.endpoint} (device {policy.device}); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
