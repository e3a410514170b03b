"""Device selection: ``auto`` picks CUDA when present, else CPU."""

import torch

from robopolicy.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} was asked for but no CUDA GPU is visible; use device=auto or device=cpu.")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"Unknown device {name!r}; use device=auto, cpu or cuda.")
