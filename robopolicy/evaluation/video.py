"""Episode videos: collect frames per episode and write them as mp4 through imageio (ffmpeg)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

_MACRO_BLOCK = 16  # H.264 macroblock: sides that are a multiple of it play everywhere


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """frames: sequence of uint8 (H, W, 3) -> an H.264 mp4 at ``path``; returns the path.

    Frame sides are padded (black, bottom and right) up to a multiple of 16 here, so every player
    takes the H.264 stream and imageio does not rescale (and warn about) e.g. 84 px camera frames.
    """
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with imageio.get_writer(tmp, fps=float(fps), codec="libx264", quality=7, macro_block_size=1) as writer:
        for f in frames:
            f = np.asarray(f, dtype=np.uint8)
            pad_h, pad_w = -f.shape[0] % _MACRO_BLOCK, -f.shape[1] % _MACRO_BLOCK
            writer.append_data(np.pad(f, ((0, pad_h), (0, pad_w), (0, 0))) if pad_h or pad_w else f)
    tmp.replace(path)  # a killed run leaves no half-written video under the final name
    return path


class EpisodeRecorder:
    """Keeps frames for the episodes that get a video; ``frames[i]`` belongs to episode ``i``."""

    def __init__(self, video_dir: str | Path | None, n_episodes: int):
        self.video_dir = None if video_dir is None else Path(video_dir)
        self.n_episodes = int(n_episodes) if video_dir is not None else 0
        self.frames: dict[int, list[np.ndarray]] = {}

    def wants(self, episode: int) -> bool:
        return episode < self.n_episodes

    def add(self, episode: int, frame: np.ndarray) -> None:
        self.frames.setdefault(episode, []).append(np.asarray(frame, dtype=np.uint8).copy())

    def flush(self, episode: int, seed: int, success: bool, fps: float) -> Path | None:
        """Write episode ``episode``'s video (named by episode, seed and outcome) and free its frames."""
        frames = self.frames.pop(episode, [])
        if not frames or self.video_dir is None:
            return None
        name = f"episode{episode:03d}_seed{seed}_{'success' if success else 'fail'}.mp4"
        return write_video(self.video_dir / name, frames, fps)
