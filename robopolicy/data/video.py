"""Video files of camera streams, through PyAV (FFmpeg's own decoders and encoders, bundled).

PyAV is the decoder: it decodes AV1 (libdav1d, LeRobot's default SVT-AV1 yuv420p files), h264 and
HEVC with the FFmpeg libraries its wheel carries. torchcodec 0.17 installs beside torch 2.14.1 but
cannot load without system FFmpeg shared libraries, which this environment does not have (the
figures are in ``tools/bench_import.py``).

* :class:`VideoWriter` / :func:`encode_video` write ``(N, H, W, 3)`` uint8 frames to one mp4 at a
  constant frame rate; :class:`ConcatVideoWriter` joins such files (one per episode) into one mp4
  by packet copy, the way LeRobot v3.0 keeps many episodes per file.
* :class:`FrameReader` hands out frames ``[start, start + n)`` of a file (frame index =
  ``round(pts_seconds * fps)``), decoding forward from where the last request stopped, so reading
  the episodes of a many-episode file in order decodes each frame once.

Every failure to open or decode a file is raised as a :class:`~robopolicy.errors.DataError` naming
the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from robopolicy.errors import DataError

# Encoder names and LeRobot's info.json ``video.codec`` names for each codec choice.
ENCODERS = {"av1": "libsvtav1", "h264": "libx264", "hevc": "libx265"}
_QUIET_OPTIONS = {"libx265": {"x265-params": "log-level=error"}}


class VideoWriter:
    """Append frames ``(N, H, W, 3)`` uint8 to one mp4 (yuv420p, constant ``fps``); ``close()`` flushes.

    codec: ``av1`` (SVT-AV1), ``h264`` or ``hevc``. preset: SVT-AV1's speed preset (0-13, higher is
    faster; av1 only); gop: frames between key frames (None: the encoder's default).
    ``frames`` counts the frames written, ``nbytes`` the encoded bytes so far.
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int, codec: str = "av1", crf: int = 30,
                 preset: int | None = None, gop: int | None = None):
        from fractions import Fraction

        if codec not in ENCODERS:
            raise DataError(f"Unknown video codec {codec!r}; use one of {sorted(ENCODERS)}.")
        if width % 2 or height % 2:
            raise DataError(f"yuv420p video needs even image sizes, got {height}x{width}; crop or resize the camera images.")
        self.path, self.frames, self.nbytes = Path(path), 0, 0
        self._container = av.open(str(path), "w")
        self._stream = self._container.add_stream(ENCODERS[codec], rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        options = {"crf": str(crf)} | _QUIET_OPTIONS.get(self._stream.codec_context.name, {})
        if preset is not None and codec == "av1":  # SVT-AV1's numeric speed preset; x264/x265 keep their default
            options["preset"] = str(preset)
        if gop is not None:
            options["g"] = str(gop)
        self._stream.options = options

    def _mux(self, packets) -> None:
        for p in packets:
            self.nbytes += p.size
        self._container.mux(packets)

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise DataError(f"Video frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}; convert the images first.")
        for img in frames:
            self._mux(self._stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        self.frames += len(frames)

    def close(self) -> None:
        if self._container is not None:
            self._mux(self._stream.encode())
            self._container.close()
            self._container = None


def encode_video(path: str | Path, frames: np.ndarray, fps: float, codec: str = "av1", crf: int = 30,
                 preset: int | None = None, gop: int | None = None) -> None:
    """Encode frames ``(N, H, W, 3)`` uint8 to ``path`` in one go (see :class:`VideoWriter`)."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise DataError(f"Video frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}; convert the images first.")
    writer = VideoWriter(path, fps, frames.shape[2], frames.shape[1], codec, crf, preset, gop)
    try:
        writer.write(frames)
    finally:
        writer.close()


class ConcatVideoWriter:
    """One mp4 holding many separately encoded segments (one per episode), appended by packet copy.

    Each segment is encoded on its own (so every episode starts at a key frame and only one
    encoder is alive at a time) and its packets are shifted to follow the previous segment:
    segment k's frame i is shown at ``(frames before k + i) / fps`` seconds. All segments must
    come from the same codec settings and image size. ``frames`` / ``nbytes`` count what was added.
    """

    def __init__(self, path: str | Path):
        self.path, self.frames, self.nbytes = Path(path), 0, 0
        self._out = None
        self._stream = None

    def append(self, segment: str | Path, fps: float) -> int:
        """Add the frames of the mp4 ``segment``; returns the index of its first frame in this file."""
        start = self.frames
        with _open(segment) as src:
            stream = src.streams.video[0]
            if self._out is None:
                self._out = av.open(str(self.path), "w", options={"movflags": "faststart"})  # index first, as LeRobot writes
                self._stream = self._out.add_stream_from_template(stream, opaque=True)
            offset = round(start / fps / stream.time_base)
            n = 0
            for packet in src.demux(stream):
                if packet.dts is None:  # the demuxer's final empty packet
                    continue
                packet.pts += offset
                packet.dts += offset
                packet.stream = self._stream
                self.nbytes += packet.size
                self._out.mux(packet)
                n += 1
        self.frames += int(stream.frames) or n
        return start

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def probe_video(path: str | Path) -> dict:
    """``{"codec", "width", "height", "fps", "frames"}`` of the first video stream of ``path``."""
    with _open(path) as container:
        s = container.streams.video[0]
        return {"codec": s.codec_context.name, "width": s.width, "height": s.height,
                "fps": float(s.average_rate or 0), "frames": int(s.frames)}


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The video file {path} is missing; restore it or drop the camera from the import.")
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise DataError(f"The video file {path} cannot be opened ({type(e).__name__}: truncated or not a video); re-encode or restore it.") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"The file {path} has no video stream; point the feature at an mp4 with one.")
    return container


class FrameReader:
    """Sequential frame access to video files: ``read(path, start, n, fps) -> (n, H, W, 3)`` uint8.

    Keeps one file open and its decoder positioned after the last frame handed out; a request for
    an earlier frame or another file reopens and seeks to the key frame before it. Use one reader
    per camera stream, so that consecutive episodes continue where the last one stopped. ``threads``: FFmpeg decoding threads (0 = automatic).
    """

    def __init__(self, threads: int = 0):
        self.threads = threads
        self._path: Path | None = None
        self._container = None
        self._frames: Iterator | None = None
        self._next = 0  # frame index the decoder yields next
        self._pending: tuple[int, np.ndarray] | None = None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._frames, self._path, self._pending = None, None, None, None

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _reopen(self, path: Path, fps: float, start: int) -> None:
        """Open ``path`` and, for ``start > 0``, seek to the key frame at or before frame ``start``."""
        self.close()
        self._container = _open(path)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self.threads
        self._path, self._next = path, 0
        if start > 0 and stream.time_base:
            try:
                self._container.seek(int((start - 0.5) / fps / stream.time_base), stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                self._reopen(path, fps, 0)  # unseekable: decode from the start
                return
        self._frames = self._decode(stream, fps)

    def _decode(self, stream, fps: float) -> Iterator[tuple[int, np.ndarray]]:
        try:
            for frame in self._container.decode(stream):
                yield round(frame.time * fps), frame.to_ndarray(format="rgb24")
        except av.FFmpegError as e:
            raise DataError(f"The video file {self._path} has undecodable frames ({type(e).__name__}); re-encode or restore it.") from None

    def read(self, path: str | Path, start: int, n: int, fps: float) -> np.ndarray:
        """Frames ``start .. start+n-1`` of ``path`` (frame i shown at ``i / fps`` seconds)."""
        path = Path(path)
        if path != self._path or start < self._next:
            self._reopen(path, fps, start)
        out: list[np.ndarray] = []
        while len(out) < n:
            if self._pending is not None:
                index, img = self._pending
                self._pending = None
            else:
                item = next(self._frames, None)
                if item is None:
                    break
                index, img = item
            if index < start:
                continue
            if index >= start + n:
                self._pending = (index, img)
                break
            if index != start + len(out):
                raise DataError(f"The video file {path} skips from frame {start + len(out) - 1} to {index} (variable frame rate or "
                                f"lost frames); re-encode it at a constant {fps:g} fps.")
            out.append(img)
        self._next = start + len(out)
        if len(out) < n:
            raise DataError(f"The video file {path} ends after frame {start + len(out) - 1} but frames up to {start + n - 1} are needed "
                            "(truncated or too short); restore the file or re-encode the episode.")
        return np.stack(out)
