"""Closed race tracks: a periodic cubic-spline centreline with a width, sampled by arc length.

A ``Track`` is built from control points (metres) through which a periodic cubic spline passes,
and a full width (one value or one per control point). It is resampled every ``spacing`` metres of
arc length; the samples carry the position, heading, left normal, signed curvature (positive =
left turn) and half-width, which is what the simulator needs: projecting cars onto the
centreline (course position ``s`` and lateral offset ``ey``, left positive), wall distances
along rays, and curvature look-aheads. The walls are the two offset curves at ``±half_width``.

``target_track()`` is the fixed track of the ``corner`` and ``lap`` tasks; ``random_track(rng)``
draws the procedural tracks the demonstrations are driven on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np

from skillcritic.errors import UserError

MIN_POINTS = 4
MAX_CURVATURE_WIDTH = 0.9  # |kappa| * half-width above this folds the inner wall
LIDAR_RANGE = 100.0  # m, the longest wall distance reported
LIDAR_BEHIND = 30.0  # m of walls behind the car searched by the (forward and sideways) rays


class TrackError(UserError, ValueError):
    """An invalid track definition (too few points, bad width, self-intersecting, too tight)."""


@dataclass(frozen=True)
class Segment:
    """A named stretch of a track, from course position ``start`` to ``end`` (metres)."""

    name: str
    start: float
    end: float


def _periodic_second_derivatives(knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Second derivatives at the knots of the periodic cubic spline through ``values``.

    ``knots`` (K+1,) increasing, the last one closing the period; ``values`` (K, D).
    """
    h = np.diff(knots)
    k = len(h)
    rows = np.arange(k)
    matrix = np.zeros((k, k))
    matrix[rows, rows] = 2.0 * (h + np.roll(h, 1))
    matrix[rows, (rows - 1) % k] += np.roll(h, 1)
    matrix[rows, (rows + 1) % k] += h
    slopes = (np.roll(values, -1, axis=0) - values) / h[:, None]
    rhs = 6.0 * (slopes - np.roll(slopes, 1, axis=0))
    return np.linalg.solve(matrix, rhs)


def _evaluate_spline(
    knots: np.ndarray, values: np.ndarray, second: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, first and second derivative of the periodic spline at parameters ``u``."""
    k = len(values)
    i = np.clip(np.searchsorted(knots, u, side="right") - 1, 0, k - 1)
    j = (i + 1) % k
    h = (knots[i + 1] - knots[i])[:, None]
    a = knots[i + 1][:, None] - u[:, None]
    b = u[:, None] - knots[i][:, None]
    m0, m1 = second[i], second[j]
    c0 = values[i] / h - m0 * h / 6.0
    c1 = values[j] / h - m1 * h / 6.0
    value = (m0 * a**3 + m1 * b**3) / (6.0 * h) + c0 * a + c1 * b
    first = (m1 * b**2 - m0 * a**2) / (2.0 * h) + c1 - c0
    second_value = (m0 * a + m1 * b) / h
    return value, first, second_value


class Track:
    """A closed track: periodic cubic-spline centreline through ``points`` with ``width``.

    Args:
        points: (K, 2) control points in metres, K >= 4, in driving order (the spline closes the
            loop from the last point back to the first; do not repeat the first point).
        width: full width wall to wall, in metres: one value or one per control point
            (interpolated linearly between them).
        name: a label.
        segments: named stretches ``{name: (start, end)}`` in metres of course position.
        spacing: arc-length spacing of the samples, metres.

    Raises:
        TrackError: too few or non-finite points, repeated consecutive points, a width <= 0,
            a corner tighter than the half-width, or a centreline that crosses or comes within the
            track width of itself.
    """

    def __init__(
        self,
        points: np.ndarray,
        width: float | np.ndarray,
        name: str = "track",
        segments: Mapping[str, tuple[float, float]] | None = None,
        spacing: float = 1.0,
    ) -> None:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < MIN_POINTS:
            raise TrackError(
                f"a track needs at least {MIN_POINTS} control points of shape (K, 2), got an "
                f"array of shape {points.shape}"
            )
        if not np.isfinite(points).all():
            raise TrackError("track control points must be finite numbers")
        widths = np.broadcast_to(np.asarray(width, dtype=np.float64), (len(points),)).copy()
        if not np.isfinite(widths).all() or (widths <= 0).any():
            raise TrackError(f"track width must be finite and > 0, got {width!r}")
        if not (math.isfinite(spacing) and spacing > 0):
            raise TrackError(f"sample spacing must be > 0, got {spacing!r}")
        chords = np.linalg.norm(np.roll(points, -1, axis=0) - points, axis=1)
        if (chords <= 1e-6 * max(chords.max(), 1.0)).any():
            raise TrackError("track control points must not repeat (consecutive duplicates)")

        self.name = name
        self.control_points = points
        self.control_widths = widths
        knots = np.concatenate([[0.0], np.cumsum(chords)])
        second = _periodic_second_derivatives(knots, points)

        # Arc length of the spline on a fine grid, then samples evenly spaced in arc length.
        per_interval = np.maximum(16, np.ceil(chords / 0.25)).astype(int)
        fine = np.concatenate(
            [
                np.linspace(knots[i], knots[i + 1], n, endpoint=False)
                for i, n in enumerate(per_interval)
            ]
            + [knots[-1:]]
        )
        _, derivative, _ = _evaluate_spline(knots, points, second, fine)
        speed = np.linalg.norm(derivative, axis=1)
        arc = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * np.diff(fine))])
        self.length = float(arc[-1])
        self.n = max(round(self.length / spacing), 8)
        self.ds = self.length / self.n
        self.s = np.arange(self.n) * self.ds
        u = np.interp(self.s, arc, fine)
        xy, d1, d2 = _evaluate_spline(knots, points, second, u)
        norm = np.linalg.norm(d1, axis=1)
        self.xy = xy
        self.tangent = d1 / norm[:, None]
        self.normal = np.stack([-self.tangent[:, 1], self.tangent[:, 0]], axis=1)  # to the left
        self.heading = np.arctan2(self.tangent[:, 1], self.tangent[:, 0])
        self.curvature = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / norm**3
        self.half_width = 0.5 * np.interp(u, knots, np.append(widths, widths[0]))
        self.left_wall = self.xy + self.half_width[:, None] * self.normal
        self.right_wall = self.xy - self.half_width[:, None] * self.normal

        self.segments: dict[str, Segment] = {}
        for key, (start, end) in (segments or {}).items():
            if not 0 <= start < end <= self.length:
                raise TrackError(
                    f"segment {key!r} ({start}, {end}) must satisfy 0 <= start < end <= "
                    f"{self.length:.1f} (the track length)"
                )
            self.segments[key] = Segment(key, float(start), float(end))
        self._check_geometry()

        # Wall polylines for ray casting: every ~2 m, as segment start points and vectors.
        self.wall_stride = max(1, round(2.0 / self.ds))
        self.wall_spacing = self.wall_stride * self.ds
        starts = np.concatenate(
            [self.left_wall[:: self.wall_stride], self.right_wall[:: self.wall_stride]]
        )
        m = len(starts) // 2
        ends = np.concatenate([np.roll(starts[:m], -1, axis=0), np.roll(starts[m:], -1, axis=0)])
        self._wall_start, self._wall_vector, self._wall_count = starts, ends - starts, m
        self._wall_back = math.ceil(LIDAR_BEHIND / self.wall_spacing) + 1
        self._wall_ahead = math.ceil(1.3 * LIDAR_RANGE / self.wall_spacing) + 2

    def _check_geometry(self) -> None:
        tight = np.abs(self.curvature) * self.half_width
        worst = int(np.argmax(tight))
        if tight[worst] > MAX_CURVATURE_WIDTH:
            raise TrackError(
                f"track {self.name!r}: the corner at s={self.s[worst]:.0f} m has radius "
                f"{1 / abs(self.curvature[worst]):.1f} m, too tight for a half-width of "
                f"{self.half_width[worst]:.1f} m (the inner wall would fold)"
            )
        # Parts of the centreline that are far apart along the track must stay at least the sum
        # of their half-widths apart; this also catches a centreline that crosses itself.
        stride = max(1, int(min(self.half_width.min(), 5.0) / self.ds))
        points, half, s = self.xy[::stride], self.half_width[::stride], self.s[::stride]
        min_separation = math.pi * self.half_width.max() + stride * self.ds
        for lo in range(0, len(points), 256):
            block = slice(lo, lo + 256)
            gap = np.abs(s[block, None] - s[None])
            gap = np.minimum(gap, self.length - gap)
            dist = np.linalg.norm(points[block, None] - points[None], axis=-1)
            bad = (gap > min_separation) & (dist < half[block, None] + half[None])
            if bad.any():
                i, j = np.argwhere(bad)[0]
                raise TrackError(
                    f"track {self.name!r} is self-intersecting or overlaps itself: "
                    f"s={s[lo + i]:.0f} m and s={s[j]:.0f} m are {dist[i, j]:.1f} m apart, less "
                    "than the width"
                )

    # --- lookups along the track ------------------------------------------------------------

    def _interp_index(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.mod(s, self.length) / self.ds
        i0 = np.floor(x).astype(np.int64) % self.n
        return i0, (i0 + 1) % self.n, x - np.floor(x)

    def curvature_at(self, s: np.ndarray) -> np.ndarray:
        """Centreline curvature (1/m, left positive) at course positions ``s`` (interpolated)."""
        i0, i1, f = self._interp_index(np.asarray(s, dtype=np.float64))
        return (1.0 - f) * self.curvature[i0] + f * self.curvature[i1]

    def half_width_at(self, s: np.ndarray) -> np.ndarray:
        """Half the track width at course positions ``s``."""
        i0, i1, f = self._interp_index(np.asarray(s, dtype=np.float64))
        return (1.0 - f) * self.half_width[i0] + f * self.half_width[i1]

    def pose_at(self, s: np.ndarray, ey: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """World positions (N, 2) at course positions ``s`` and lateral offsets ``ey`` (left
        positive), and the centreline heading there (rad)."""
        i0, i1, f = self._interp_index(np.asarray(s, dtype=np.float64))
        f2 = f[..., None]
        centre = (1.0 - f2) * self.xy[i0] + f2 * self.xy[i1]
        tangent = (1.0 - f2) * self.tangent[i0] + f2 * self.tangent[i1]
        heading = np.arctan2(tangent[..., 1], tangent[..., 0])
        normal = np.stack([-np.sin(heading), np.cos(heading)], axis=-1)
        return centre + np.asarray(ey)[..., None] * normal, heading

    def project(
        self, xy: np.ndarray, hint: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Course position ``s``, lateral offset ``ey`` (left positive) and nearest sample index
        of the points ``xy`` (N, 2).

        With ``hint`` (the sample indices of a previous projection, a few metres away at most)
        a few Newton steps along the track replace the global nearest-sample search.
        """
        xy = np.asarray(xy, dtype=np.float64)
        if hint is None:
            index = np.empty(len(xy), dtype=np.int64)
            for lo in range(0, len(xy), 64):
                d2 = ((xy[lo : lo + 64, None, :] - self.xy[None]) ** 2).sum(-1)
                index[lo : lo + 64] = d2.argmin(axis=1)
        else:
            index = np.asarray(hint, dtype=np.int64) % self.n
        for _ in range(3):
            d = xy - self.xy[index]
            along = (d * self.tangent[index]).sum(1)
            lateral = (d * self.normal[index]).sum(1)
            # Along the centreline, a point at lateral offset ey moves 1 / (1 - kappa ey) as fast.
            stretch = np.maximum(1.0 - self.curvature[index] * lateral, 0.1)
            index = (index + np.rint(along / (self.ds * stretch)).astype(np.int64)) % self.n
        d = xy - self.xy[index]
        along = (d * self.tangent[index]).sum(1)
        lateral = (d * self.normal[index]).sum(1)
        stretch = np.maximum(1.0 - self.curvature[index] * lateral, 0.1)
        return np.mod(self.s[index] + along / stretch, self.length), lateral, index

    def ray_distances(
        self, xy: np.ndarray, heading: np.ndarray, index: np.ndarray, angles: np.ndarray
    ) -> np.ndarray:
        """Distance (m) from ``xy`` (N, 2) to the first wall along rays at ``angles`` (R,)
        (rad, counter-clockwise from ``heading``), capped at ``LIDAR_RANGE``.

        Only the wall pieces from ``LIDAR_BEHIND`` behind to ``1.3 LIDAR_RANGE`` ahead of the
        car's sample ``index`` are searched: from inside the track, a ray pointing forwards or
        sideways leaves it through them.
        """
        xy, heading = np.asarray(xy), np.asarray(heading)
        index, angles = np.asarray(index), np.asarray(angles)
        out = np.empty((len(xy), len(angles)))
        for lo in range(0, len(xy), 16):  # blocks of cars keep the (cars, rays, walls) arrays small
            block = slice(lo, lo + 16)
            out[block] = self._cast(xy[block], heading[block], index[block], angles)
        return out

    def _cast(
        self, xy: np.ndarray, heading: np.ndarray, index: np.ndarray, angles: np.ndarray
    ) -> np.ndarray:
        wall = (index // self.wall_stride)[:, None] + np.arange(-self._wall_back, self._wall_ahead)
        wall = wall % self._wall_count
        wall = np.concatenate([wall, wall + self._wall_count], axis=1)  # left, right
        start = self._wall_start[wall]  # (N, S, 2)
        vector = self._wall_vector[wall]
        direction = heading[:, None] + angles[None]  # (N, R)
        dx, dy = np.cos(direction)[..., None], np.sin(direction)[..., None]
        rx = (start[..., 0] - xy[:, 0, None])[:, None]  # (N, 1, S)
        ry = (start[..., 1] - xy[:, 1, None])[:, None]
        ex, ey = vector[..., 0][:, None], vector[..., 1][:, None]
        # Ray xy + t d meets wall piece start + u e where t = (r x e) / (d x e), u = (r x d) /
        # (d x e); parallel pieces give inf or nan, which the comparisons below reject.
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = 1.0 / (dx * ey - dy * ex)  # (N, R, S)
            along_ray = (rx * ey - ry * ex) * inverse
            along_wall = (rx * dy - ry * dx) * inverse
            hit = (np.abs(along_wall - 0.5) <= 0.5) & (along_ray >= 0)
        return np.where(hit, along_ray, LIDAR_RANGE).min(axis=-1).clip(max=LIDAR_RANGE)

    def contains(self, s: float, segment: str) -> bool:
        """Whether course position ``s`` lies in the named segment."""
        seg = self.segments[segment]
        return seg.start <= s <= seg.end


# --- the fixed target track and the procedural ones -------------------------------------------

# The target circuit as straights ("S", length) and arcs ("A", degrees left, radius), driven
# counter-clockwise from the start line. The "corner" segment (like GTS corner 2 at 1200-2400 m)
# starts 250 m before a braking zone into a tight left hairpin and ends after the right-left
# chicane that follows it. Straights 0 and 5 are resized so that the loop closes exactly.
_TARGET_PIECES = (
    ("S", 600.0), ("A", 90.0, 70.0), ("S", 250.0), ("A", -60.0, 150.0), ("A", 60.0, 90.0),
    ("S", 400.0), ("A", 180.0, 25.0), ("S", 250.0), ("A", -70.0, 45.0), ("A", 70.0, 45.0),
    ("S", 300.0), ("A", -90.0, 60.0), ("S", 300.0), ("A", 90.0, 100.0), ("S", 200.0),
    ("A", 90.0, 80.0),
)  # fmt: skip
_TARGET_CLOSING = (0, 5)  # the straights (pointing along x and y) that close the loop
TARGET_WIDTH = 12.0
CORNER_SEGMENT = "corner"
_TARGET_CORNER = (1200.0, 2000.0)


def path_points(
    pieces: tuple[tuple, ...], straight_step: float = 50.0, arc_step: float = 15.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Control points along a path of straights ``("S", length)`` and arcs
    ``("A", degrees, radius)`` (positive degrees turn left) from the origin heading along +x:
    every ``straight_step`` metres and ``arc_step`` degrees. Returns the points, the end point
    and the end heading (rad)."""
    points = []
    position, heading = np.zeros(2), 0.0
    for piece in pieces:
        if piece[0] == "S":
            n = max(1, math.ceil(piece[1] / straight_step))
            step = piece[1] / n * np.array([math.cos(heading), math.sin(heading)])
            for _ in range(n):
                points.append(position)
                position = position + step
        else:
            turn, radius = math.radians(piece[1]), piece[2]
            side = math.copysign(1.0, turn)
            centre = position + side * radius * np.array([-math.sin(heading), math.cos(heading)])
            n = max(2, math.ceil(abs(piece[1]) / arc_step))
            for _ in range(n):
                points.append(position)
                heading += turn / n
                position = centre + side * radius * np.array(
                    [math.sin(heading), -math.cos(heading)]
                )
    return np.array(points), position, heading


@cache
def target_track() -> Track:
    """The fixed track of the ``corner`` and ``lap`` tasks (built once per process)."""
    pieces = [list(p) for p in _TARGET_PIECES]
    _, end, _ = path_points(tuple(tuple(p) for p in pieces))
    first, second = _TARGET_CLOSING  # along +x and +y: subtract the closing error from them
    pieces[first][1] -= end[0]
    pieces[second][1] -= end[1]
    points, _, _ = path_points(tuple(tuple(p) for p in pieces))
    return Track(points, TARGET_WIDTH, name="target", segments={CORNER_SEGMENT: _TARGET_CORNER})


def random_track(
    rng: np.random.Generator,
    length: tuple[float, float] = (1500.0, 3000.0),
    width: tuple[float, float] = (10.0, 14.0),
    max_tries: int = 100,
) -> Track:
    """A procedural closed track: a jittered star-shaped loop of 8-14 control points, scaled to
    a random length in ``length`` and a random width; redrawn until it is a valid track."""
    for _ in range(max_tries):
        k = int(rng.integers(8, 15))
        angles = np.sort(
            2 * np.pi * (np.arange(k) + rng.uniform(-0.35, 0.35, k)) / k + rng.uniform(0, 2 * np.pi)
        )
        radii = rng.uniform(0.55, 1.0, k)
        points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        perimeter = np.linalg.norm(np.roll(points, -1, axis=0) - points, axis=1).sum()
        points *= rng.uniform(*length) / perimeter
        try:
            return Track(points, rng.uniform(*width), name="random")
        except TrackError:
            continue
    raise TrackError(f"no valid random track in {max_tries} tries; widen the length range")
