"""Episode data: the zarr episode store, windowed sampling, normalizers, robomimic interop.

Names are imported on first use so that ``from robopolicy.data import EpisodeStore`` does not pull
in torch (a collect run starts seconds faster).
"""

import importlib

_WHERE = {
    "EpisodeStore": "robopolicy.data.store",
    "WindowDataset": "robopolicy.data.windows",
    "split_episodes": "robopolicy.data.windows",
    "Normalizer": "robopolicy.data.normalize",
    "fit_normalizer": "robopolicy.data.normalize",
    "import_robomimic": "robopolicy.data.robomimic_io",
    "export_robomimic": "robopolicy.data.robomimic_io",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'robopolicy.data' has no attribute {name!r}")
