"""Top-down RGB frames of a track and the cars on it."""

from __future__ import annotations

import numpy as np

from skillcritic.envs.racing.track import Track

GRASS = np.array([70, 120, 60], np.uint8)
ASPHALT = np.array([110, 110, 115], np.uint8)
SEGMENT = np.array([150, 130, 100], np.uint8)
START_LINE = np.array([245, 245, 245], np.uint8)
CAR_COLOURS = np.array(
    [[230, 40, 40], [40, 90, 230], [240, 200, 30], [230, 120, 30], [160, 60, 200], [30, 200, 200]],
    np.uint8,
)


class TrackPainter:
    """Draws ``track`` into ``size``-pixel frames (the longer side); the background is drawn
    once. ``segment`` (a name of ``track.segments``) is tinted."""

    def __init__(self, track: Track, size: int = 480, segment: str | None = None) -> None:
        self.track = track
        corners = np.concatenate([track.left_wall, track.right_wall])
        low, high = corners.min(0), corners.max(0)
        margin = 0.04 * (high - low).max() + 10.0
        self.origin = low - margin
        self.scale = size / ((high - low).max() + 2 * margin)  # pixels per metre
        width, height = np.ceil((high - low + 2 * margin) * self.scale).astype(int)
        self.shape = (int(height), int(width))
        background = np.empty((*self.shape, 3), np.uint8)
        background[:] = GRASS
        self._paint_band(background, 0.0, track.length, ASPHALT)
        if segment is not None and segment in track.segments:
            seg = track.segments[segment]
            self._paint_band(background, seg.start, seg.end, SEGMENT)
        line = np.linspace(track.left_wall[0], track.right_wall[0], 64)
        r, c = self.to_pixels(line)
        background[r, c] = START_LINE
        self.background = background.astype(np.uint8)

    def _paint_band(self, frame: np.ndarray, start: float, end: float, colour: np.ndarray) -> None:
        """Paint the track from course position ``start`` to ``end``: a disc of the track's
        half-width around every centreline point, one point per pixel along the track."""
        s = np.arange(start, end, 1.0 / self.scale)
        centre, _ = self.track.pose_at(s)
        radius = self.track.half_width_at(s) * self.scale  # pixels
        reach = int(np.ceil(radius.max()))
        offsets = np.arange(-reach, reach + 1)
        dr, dc = (o.ravel() for o in np.meshgrid(offsets, offsets, indexing="ij"))
        rows, cols = self.to_pixels(centre)
        inside = dr[None] ** 2 + dc[None] ** 2 <= radius[:, None] ** 2  # (points, offsets)
        r = np.clip(rows[:, None] + dr[None], 0, self.shape[0] - 1)[inside]
        c = np.clip(cols[:, None] + dc[None], 0, self.shape[1] - 1)[inside]
        frame[r, c] = colour

    def to_pixels(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices (clipped to the frame) of world points ``xy`` (..., 2)."""
        col = np.floor((xy[..., 0] - self.origin[0]) * self.scale).astype(int)
        row = self.shape[0] - 1 - np.floor((xy[..., 1] - self.origin[1]) * self.scale).astype(int)
        return np.clip(row, 0, self.shape[0] - 1), np.clip(col, 0, self.shape[1] - 1)

    def __call__(self, xy: np.ndarray, heading: np.ndarray) -> np.ndarray:
        """A frame with a marker per car (a dot and a short heading line), (H, W, 3) uint8."""
        frame = self.background.copy()
        radius = max(2.5, 2.5 * self.scale)  # pixels: at least visible, else the car's size
        offsets = np.arange(-int(radius), int(radius) + 1)
        dr, dc = np.meshgrid(offsets, offsets, indexing="ij")
        disc = dr**2 + dc**2 <= radius**2
        dr, dc = dr[disc], dc[disc]
        for i, (position, angle) in enumerate(
            zip(np.atleast_2d(xy), np.atleast_1d(heading), strict=True)
        ):
            colour = CAR_COLOURS[i % len(CAR_COLOURS)]
            r, c = self.to_pixels(position)
            frame[np.clip(r + dr, 0, self.shape[0] - 1), np.clip(c + dc, 0, self.shape[1] - 1)] = (
                colour
            )
            nose = position + np.outer(
                np.linspace(0, 3 * radius / self.scale, 12), [np.cos(angle), np.sin(angle)]
            )
            frame[self.to_pixels(nose)] = colour
        return frame
