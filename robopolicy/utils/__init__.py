"""Small helpers shared by every part: devices, seeding, atomic file writes."""

from robopolicy.utils.device import resolve_device
from robopolicy.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from robopolicy.utils.seed import seed_everything

__all__ = ["resolve_device", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "seed_everything"]
