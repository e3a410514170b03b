"""``robopolicy-policy-server``: serve a trained policy over ZeroMQ and/or openpi's websocket protocol.

Any policy kind: plain, goal-conditioned (clients send the goal with each observation, or the
server's ``goal=`` is used) and V-GPS-steered (``steer=vgps steer.critic=RUN steer.k=K``, the
critic runs in the server, as in ``robopolicy-eval``). See conf/policy_server.yaml and docs/WIRE.md.
"""

from __future__ import annotations

import logging
import threading

from omegaconf import DictConfig, OmegaConf

from robopolicy.cli._hydra import hydra_command
from robopolicy.errors import ConfigError


def load_for_serving(run_dir: str, checkpoint: str = "last", device: str = "auto", sampler: dict | None = None):
    """The run's policy on ``device``, sampler settings overridden (also the ServerProcess factory)."""
    from robopolicy.api import load_run

    return load_run(run_dir, str(checkpoint), {"policy": {"sampler": dict(sampler)}} if sampler else None, device=device).policy


def limits(cfg: DictConfig) -> dict:
    return {k: int(cfg[k]) for k in ("max_message_bytes", "workers", "per_client", "max_queue")}


@hydra_command("policy_server")
def main(cfg: DictConfig) -> None:
    from robopolicy.cli.eval import _steer
    from robopolicy.runtime.client import read_goal
    from robopolicy.runtime.served import ServedPolicy

    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not cfg.bind and not cfg.openpi:
        raise ConfigError("Neither bind= nor openpi= is set, so there is nothing to serve on; give at least one address.")
    sampler = OmegaConf.to_container(cfg.policy.sampler, resolve=True) if cfg.get("policy") else {}
    policy = load_for_serving(cfg.run_dir, cfg.checkpoint, cfg.device, sampler)
    policy, steer_info = _steer(cfg, policy)
    goal = OmegaConf.to_container(cfg.goal, resolve=True) if isinstance(cfg.goal, DictConfig) else cfg.goal
    predictor = ServedPolicy(policy, torch_threads=cfg.torch_threads, goal=read_goal(goal))
    if predictor.default_goal is not None:
        predictor.check_goal(predictor.default_goal)  # a bad goal= fails now, not at the first request
    what = f"{cfg.run_dir}" + (f" steered by {steer_info.get('critic')} (k={steer_info.get('k')})" if steer_info else "")
    threads, servers = [], []
    if cfg.openpi:
        from robopolicy.runtime.openpi_server import OpenPIServer

        ws = OpenPIServer(predictor, bind=cfg.openpi, token=cfg.token, max_clients=int(cfg.max_clients), **limits(cfg))
        servers.append(ws)
        threads.append(threading.Thread(target=ws.serve_forever, name="openpi-server", daemon=True))
        print(f"serving {what} on {ws.endpoint} (openpi protocol)", flush=True)
    zmq_server = None
    if cfg.bind:
        from robopolicy.runtime.server import PolicyServer

        zmq_server = PolicyServer(predictor, bind=cfg.bind, token=cfg.token, **limits(cfg))
        servers.append(zmq_server)
        print(f"serving {what} on {zmq_server.endpoint} (robopolicy wire v2)", flush=True)
    print(f"device {policy.device}; Ctrl-C stops", flush=True)
    for t in threads:
        t.start()
    try:
        if zmq_server is not None:
            zmq_server.serve_forever()
        else:
            threads[0].join()
    except KeyboardInterrupt:
        pass
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
