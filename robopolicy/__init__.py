"""robopolicy: diffusion and value-guided robot policies, from demonstrations to a fixed-rate runner.

``robopolicy.load(run_dir)`` returns a ready policy from a training run (see :mod:`robopolicy.api`).
"""

__version__ = "0.1.0"


def load(run_dir, checkpoint: str = "last", device: str = "auto", overrides=None):
    """Load a trained policy from ``run_dir`` (see :func:`robopolicy.api.load`)."""
    from robopolicy.api import load as _load

    return _load(run_dir, checkpoint=checkpoint, device=device, overrides=overrides)


__all__ = ["load", "__version__"]
