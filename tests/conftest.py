"""Shared test settings: headless rendering, W&B off, one CPU thread per test process."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HYDRA_FULL_ERROR", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_hydra_config():
    """Tests that compose a command in-process set Hydra's global HydraConfig; clear it after each
    test so a later test does not see that run's overrides (e.g. whether task= was given)."""
    yield
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None


@pytest.fixture
def serve():
    """Start policy servers on loopback in threads (``serve(policy, **kw) -> server``); all are stopped after the test."""
    from robopolicy.runtime.server import serve_in_thread

    started = []

    def start(policy, **kw):
        srv, th = serve_in_thread(policy, bind="tcp://127.0.0.1:0", **kw)
        started.append((srv, th))
        return srv

    yield start
    for srv, th in started:
        srv.stop()
        th.join(5)
