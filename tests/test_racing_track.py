"""Racing tracks: spline geometry, projection, wall rays against hand-built geometry, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skillcritic.envs.racing.track import (
    CORNER_SEGMENT,
    LIDAR_RANGE,
    Track,
    TrackError,
    path_points,
    random_track,
    target_track,
)
from skillcritic.errors import UserError

RADIUS, WIDTH = 100.0, 12.0


def circle(radius: float = RADIUS, clockwise: bool = False, n: int = 64) -> Track:
    angles = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    if clockwise:
        angles = -angles
    return Track(np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1), WIDTH)


def ray_to_circles(origin: np.ndarray, angle: float, inner: float, outer: float) -> float:
    """Distance along a ray from ``origin`` (between two centred circles) to the first circle."""
    d = np.array([math.cos(angle), math.sin(angle)])
    b = float(origin @ d)
    c0 = float(origin @ origin)
    hits = []
    disc = b * b - c0 + inner**2
    if disc >= 0 and -b - math.sqrt(disc) > 0:  # enters the inner circle (the infield)
        hits.append(-b - math.sqrt(disc))
    hits.append(-b + math.sqrt(b * b - c0 + outer**2))  # leaves the outer circle
    return min(min(hits), LIDAR_RANGE)


def test_circle_geometry_and_curvature() -> None:
    track = circle()
    assert track.length == pytest.approx(2 * np.pi * RADIUS, rel=1e-4)
    np.testing.assert_allclose(track.curvature, 1.0 / RADIUS, rtol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(track.xy, axis=1), RADIUS, rtol=1e-4)
    np.testing.assert_allclose(track.half_width, WIDTH / 2)
    # counter-clockwise: heading = polar angle + 90 degrees, the left normal points inwards
    polar = np.arctan2(track.xy[:, 1], track.xy[:, 0])
    np.testing.assert_allclose(np.cos(track.heading - polar - np.pi / 2), 1.0, atol=1e-6)
    np.testing.assert_allclose((track.normal * track.xy).sum(1), -RADIUS, rtol=1e-4)
    np.testing.assert_allclose(circle(clockwise=True).curvature, -1.0 / RADIUS, rtol=2e-3)


def test_projection_inverts_pose_at() -> None:
    track = target_track()
    rng = np.random.default_rng(0)
    s = rng.uniform(0, track.length, 200)
    ey = rng.uniform(-5.0, 5.0, 200)
    xy, _ = track.pose_at(s, ey)
    s_back, ey_back, index = track.project(xy)
    gap = np.abs(s_back - s)
    np.testing.assert_allclose(np.minimum(gap, track.length - gap), 0.0, atol=0.05)
    np.testing.assert_allclose(ey_back, ey, atol=0.02)
    # The local (hinted) projection agrees with the global one a few metres on.
    xy2, _ = track.pose_at(s + 2.0, ey)
    np.testing.assert_allclose(track.project(xy2, index)[0], track.project(xy2)[0], atol=1e-9)


def test_course_position_is_monotone_along_the_centreline() -> None:
    track = target_track()
    s = np.linspace(0.0, track.length, 3000, endpoint=False) + 0.3
    xy, _ = track.pose_at(s, 2.0)
    projected, ey, _ = track.project(xy)
    assert (np.diff(projected) > 0).all()
    np.testing.assert_allclose(ey, 2.0, atol=0.02)


@pytest.mark.parametrize(("offset", "heading"), [(0.0, 0.0), (2.5, 0.3), (-4.0, -0.2)])
def test_lidar_against_hand_built_geometry(offset: float, heading: float) -> None:
    track = circle()
    angles = np.radians([0, 15, 30, 45, 60, 75, 90, 270, 285, 300, 315, 330, 345])
    xy, track_heading = track.pose_at(np.array([0.0]), offset)
    yaw = track_heading + heading
    _, _, index = track.project(xy)
    measured = track.ray_distances(xy, yaw, index, angles)[0]
    expected = [
        ray_to_circles(xy[0], float(yaw[0] + a), RADIUS - WIDTH / 2, RADIUS + WIDTH / 2)
        for a in angles
    ]
    np.testing.assert_allclose(measured, expected, atol=0.05)
    # on the centreline, the side rays see the walls at half the width
    if offset == 0.0 and heading == 0.0:
        assert measured[6] == pytest.approx(WIDTH / 2, abs=0.02)  # 90 degrees: left, inner wall
        assert measured[7] == pytest.approx(WIDTH / 2, abs=0.02)  # 270 degrees: right, outer


def test_lidar_is_capped() -> None:
    track = target_track()  # the start of the 300 m main straight, looking along it
    xy, heading = track.pose_at(np.array([0.0]))
    _, _, index = track.project(xy)
    assert track.ray_distances(xy, heading, index, np.array([0.0]))[0, 0] == LIDAR_RANGE


def test_target_track_and_segment() -> None:
    track = target_track()
    assert track is target_track()  # built once
    segment = track.segments[CORNER_SEGMENT]
    assert 0 <= segment.start < segment.end <= track.length
    assert 2500 < track.length < 3500
    # a tight hairpin and fast corners: the segment holds the track's tightest corner
    inside = (track.s >= segment.start) & (track.s <= segment.end)
    assert np.abs(track.curvature[inside]).max() == pytest.approx(np.abs(track.curvature).max())
    assert 1 / np.abs(track.curvature).max() < 30
    # the loop closes smoothly: no kink at the start line
    assert abs(track.heading[0] - track.heading[-1]) < 0.01
    assert track.contains(segment.start + 1, CORNER_SEGMENT)


def test_path_points_close_a_square() -> None:
    pieces = (("S", 100.0), ("A", 90.0, 20.0)) * 4
    points, end, heading = path_points(pieces)
    np.testing.assert_allclose(end, [0.0, 0.0], atol=1e-9)
    assert heading == pytest.approx(2 * np.pi)
    track = Track(points, 8.0)
    assert track.length == pytest.approx(400 + 2 * np.pi * 20, rel=5e-3)


def test_random_tracks_are_valid_and_reproducible() -> None:
    lengths = []
    for seed in range(5):
        track = random_track(np.random.default_rng(seed))
        again = random_track(np.random.default_rng(seed))
        np.testing.assert_array_equal(track.xy, again.xy)
        assert 1400 < track.length < 3200
        assert track.half_width.min() >= 5.0 and track.half_width.max() <= 7.0
        assert (np.abs(track.curvature) * track.half_width).max() < 0.9
        lengths.append(track.length)
    assert len(set(lengths)) == 5


def test_invalid_tracks_are_refused() -> None:
    square = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], dtype=float)
    Track(square * 3, 10.0)  # fine
    with pytest.raises(TrackError, match="at least 4"):
        Track(square[:3], 10.0)
    with pytest.raises(TrackError, match="at least 4"):
        Track(square.ravel(), 10.0)
    for width in (0.0, -3.0, np.nan, [10.0, 10.0, 0.0, 10.0]):
        with pytest.raises(TrackError, match="width"):
            Track(square * 3, width)
    with pytest.raises(TrackError, match="finite"):
        Track(np.where(square == 100, np.nan, square), 10.0)
    with pytest.raises(TrackError, match="repeat"):
        Track(np.concatenate([square[:2], square[1:]]), 10.0)
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    figure_eight = np.stack([300 * np.sin(t), 150 * np.sin(2 * t)], axis=1)
    with pytest.raises(TrackError, match="self-intersecting"):
        Track(figure_eight, 10.0)
    with pytest.raises(TrackError, match="too tight"):
        Track(square * 0.1, 12.0)  # corners of a few metres radius with a 6 m half-width
    with pytest.raises(TrackError, match="segment"):
        Track(square * 3, 10.0, segments={"x": (-1.0, 50.0)})
    assert issubclass(TrackError, ValueError) and issubclass(TrackError, UserError)
