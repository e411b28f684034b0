"""Animated GIFs of episodes (imageio + pillow; no ffmpeg needed)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np


def subsample_frames(frames: Sequence[np.ndarray] | np.ndarray, max_frames: int) -> list:
    """Every k-th frame, k as small as possible so at most ``max_frames`` remain; keeps the last."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    count = len(frames)
    if count <= max_frames:
        return list(frames)
    if max_frames == 1:
        return [frames[-1]]
    step = math.ceil((count - 1) / (max_frames - 1))
    return [frames[i] for i in range(0, count - 1, step)] + [frames[-1]]


def _check_frames(frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    if len(frames) == 0:
        raise ValueError("no frames to write")
    shapes = {np.shape(frame) for frame in frames}
    if len(shapes) != 1:
        raise ValueError(f"frames differ in shape: {sorted(shapes)}")
    video = np.asarray(frames)
    if video.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {video.dtype}")
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"frames must be RGB (T, H, W, 3), got shape {video.shape}")
    return video


def write_video(
    frames: Sequence[np.ndarray] | np.ndarray, path: Path, fps: int = 25, scale: int = 1
) -> Path:
    """Write RGB uint8 frames (T, H, W, 3) as a looping GIF, atomically (temp file + rename).

    ``scale`` keeps every scale-th pixel along each axis (a cheap downscale). Pillow merges
    consecutive identical frames into one longer frame, so a reader may see fewer frames.
    """
    if fps < 1 or scale < 1:
        raise ValueError(f"fps and scale must be at least 1, got fps={fps}, scale={scale}")
    video = np.ascontiguousarray(_check_frames(frames)[:, ::scale, ::scale])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        iio.imwrite(temporary, video, extension=".gif", duration=1000 / fps, loop=0)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
