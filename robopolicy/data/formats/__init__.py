"""Dataset interop: other tools' episode formats in and out of the episode store.

    import_dataset(src, out, format="auto")      LeRobot v3.0 / v2.1 folder, DP zarr buffer, robomimic HDF5
    export_dataset(store, out, format="lerobot")  LeRobot v3.0 folder or robomimic HDF5

Both build into a temporary path beside ``out`` and rename it into place at the end, so a failure
or a kill leaves nothing at ``out``.
"""

from robopolicy.data.formats.importer import (
    detect_format,
    export_dataset,
    import_dataset,
)

__all__ = ["detect_format", "export_dataset", "import_dataset"]
