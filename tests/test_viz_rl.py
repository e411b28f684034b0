"""Tests for skillcritic.viz.videos (GIFs), plot_skill_path and plot_cell_values: real files
written and read back."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from skillcritic.viz.pictures import plot_cell_values, plot_skill_path
from skillcritic.viz.videos import subsample_frames, write_video


def moving_square(n_frames: int = 6, size: int = 16) -> np.ndarray:
    """RGB frames distinct even at scale 2 (Pillow merges identical consecutive GIF frames)."""
    frames = np.zeros((n_frames, size, size, 3), dtype=np.uint8)
    for t in range(n_frames):
        frames[t, 4:8, 2 * t : 2 * t + 4] = (255, 0, 0)
        frames[t, 10:14, 2:6] = (0, 0, 255)
    return frames


@pytest.mark.parametrize("scale", [1, 2])
def test_gif_round_trip(tmp_path, scale):
    frames = moving_square()
    written = write_video(list(frames), tmp_path / "sub" / "episode.gif", fps=10, scale=scale)
    assert written == tmp_path / "sub" / "episode.gif"
    video = iio.imread(written, index=None)
    assert video.shape[:3] == (6, 16 // scale, 16 // scale)
    assert video.shape[-1] in (3, 4)
    assert [p.name for p in written.parent.iterdir()] == ["episode.gif"]  # no temp file left


@pytest.mark.parametrize(
    "frames, message",
    [
        ([], "no frames"),
        (np.zeros((2, 8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((2, 8, 8), dtype=np.uint8), "RGB"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 6, 3), np.uint8)], "differ in shape"),
    ],
)
def test_write_video_rejects_bad_frames(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        write_video(frames, tmp_path / "bad.gif")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("count, max_frames", [(2000, 300), (10, 3), (10, 1), (7, 7), (5, 10)])
def test_subsample_frames_keeps_last_within_budget(count, max_frames):
    kept = subsample_frames(list(range(count)), max_frames)
    assert kept[-1] == count - 1
    assert len(kept) <= max_frames
    assert kept == sorted(set(kept))
    if count <= max_frames:
        assert kept == list(range(count))


def small_maze() -> np.ndarray:
    walls = np.zeros((5, 5), dtype=bool)
    walls[[0, -1], :] = walls[:, [0, -1]] = True
    return walls


def test_plot_skill_path_writes_png(tmp_path):
    positions = np.stack([np.linspace(1, 3, 23), np.linspace(1, 3, 23) ** 1.1], axis=1)
    written = plot_skill_path(small_maze(), positions, 10, tmp_path / "hrl.png", goal=(3, 3))
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written.stat().st_size > 0


def test_plot_cell_values_writes_png_and_checks_shape(tmp_path):
    walls = small_maze()
    values = np.arange(walls.size, dtype=float).reshape(walls.shape)
    values[2, 2] = np.nan  # a cell without a value stays blank
    marked = np.array([[1, 1], [3, 2]])
    written = plot_cell_values(walls, values, tmp_path / "q.png", "Q", (3, 3), marked=marked)
    assert iio.imread(written).ndim == 3
    assert [p.name for p in tmp_path.iterdir()] == ["q.png"]
    with pytest.raises(ValueError, match="walls' shape"):
        plot_cell_values(walls, values[:, :3], tmp_path / "bad.png", "Q")
    assert not (tmp_path / "bad.png").exists()


def test_same_path_is_replaced_by_complete_files(tmp_path):
    gif = tmp_path / "episode.gif"
    write_video(moving_square(6), gif)
    write_video(moving_square(4), gif)
    assert iio.imread(gif, index=None).shape[0] == 4

    png = tmp_path / "hrl.png"
    positions = np.full((23, 2), 2.0)
    plot_skill_path(small_maze(), positions, 10, png, title="first")
    plot_skill_path(small_maze(), positions[:5], 10, png, title="second")
    assert iio.imread(png).ndim == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode.gif", "hrl.png"]
