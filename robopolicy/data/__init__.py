"""Episode data: the zarr episode store, windowed sampling, normalizers, robomimic interop."""

from robopolicy.data.normalize import Normalizer, fit_normalizer
from robopolicy.data.robomimic_io import export_robomimic, import_robomimic
from robopolicy.data.store import EpisodeStore
from robopolicy.data.windows import WindowDataset, split_episodes

__all__ = ["EpisodeStore", "WindowDataset", "split_episodes", "Normalizer", "fit_normalizer", "import_robomimic", "export_robomimic"]
