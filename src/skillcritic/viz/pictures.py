"""Pictures written into run folders: reconstructions, paths in a maze, visit heatmaps."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np


def _save(figure: plt.Figure, path: Path) -> Path:
    """Write atomically (temp file + rename) so a reader never sees half a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, dpi=100, bbox_inches="tight", format="png")
    plt.close(figure)
    os.replace(temporary, path)
    return path


def plot_reconstructions(
    targets: np.ndarray, reconstructions: np.ndarray, path: Path, title: str = ""
) -> Path:
    """Action chunks (N, H, da) against their reconstructions, one panel per window."""
    n_windows, horizon, action_dim = targets.shape
    columns = min(n_windows, 4)
    figure, axes = plt.subplots(1, columns, figsize=(3.2 * columns, 2.6), squeeze=False)
    colors = plt.cm.tab10(np.arange(action_dim))
    steps = np.arange(horizon)
    for i, axis in enumerate(axes[0]):
        for d in range(action_dim):
            axis.plot(steps, targets[i, :, d], color=colors[d], label=f"a{d} data")
            axis.plot(steps, reconstructions[i, :, d], "--", color=colors[d], label=f"a{d} decoded")
        axis.set_ylim(-1.1, 1.1)
        axis.set_xlabel("step in skill")
    axes[0, 0].set_ylabel("action")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    figure.suptitle(title or "reconstructed action chunks (solid: data, dashed: decoded)")
    return _save(figure, path)


def _draw_walls(axis: plt.Axes, walls: np.ndarray) -> None:
    rows, cols = walls.shape
    axis.imshow(walls, cmap="Greys", vmin=0, vmax=1.6, extent=(-0.5, cols - 0.5, rows - 0.5, -0.5))
    axis.set_xticks([])
    axis.set_yticks([])


def plot_maze_paths(
    walls: np.ndarray,
    paths: list[np.ndarray],
    path: Path,
    goal: tuple[float, float] | None = None,
    title: str = "",
) -> Path:
    """Paths (each (T, 2) in (row, col)) drawn into the maze, each start marked."""
    figure, axis = plt.subplots(figsize=(6, 6 * walls.shape[0] / walls.shape[1]))
    _draw_walls(axis, walls)
    colors = plt.cm.viridis(np.linspace(0, 1, max(len(paths), 2)))
    for trajectory, color in zip(paths, colors, strict=False):
        axis.plot(trajectory[:, 1], trajectory[:, 0], color=color, linewidth=1.2)
        axis.plot(trajectory[0, 1], trajectory[0, 0], "o", color="black", markersize=3)
    if goal is not None:
        axis.plot(goal[1], goal[0], "*", color="tab:red", markersize=14)
    axis.set_title(title)
    return _save(figure, path)


def plot_visit_heatmap(
    walls: np.ndarray,
    positions: np.ndarray,
    path: Path,
    goal: tuple[float, float] | None = None,
    title: str = "",
) -> Path:
    """Fraction of episodes that visited each cell, from positions (N, T, 2)."""
    rows, cols = walls.shape
    cells = np.clip(np.rint(positions).astype(np.int64), 0, [rows - 1, cols - 1])
    visited = np.zeros((len(positions), rows, cols), dtype=bool)
    episode = np.repeat(np.arange(len(positions)), positions.shape[1])
    visited[episode, cells[..., 0].ravel(), cells[..., 1].ravel()] = True
    return plot_cell_values(
        walls, visited.mean(axis=0), path, "share of episodes visiting the cell", goal, title, 0, 1
    )


def plot_cell_values(
    walls: np.ndarray,
    values: np.ndarray,
    path: Path,
    label: str,
    goal: tuple[float, float] | None = None,
    title: str = "",
    vmin: float | None = None,
    vmax: float | None = None,
    marked: np.ndarray | None = None,
) -> Path:
    """A value per cell (``values`` shaped like ``walls``; walls and NaNs left blank) as a
    heat map over the maze, the goal starred and the cells of ``marked`` ((M, 2) row, col)
    dotted."""
    if values.shape != walls.shape:
        raise ValueError(f"values {values.shape} must have the walls' shape {walls.shape}")
    rows, cols = walls.shape
    figure, axis = plt.subplots(figsize=(6.6, 6 * rows / cols))
    _draw_walls(axis, walls)
    image = axis.imshow(
        np.where(walls, np.nan, values),
        cmap="magma",
        vmin=vmin,
        vmax=vmax,
        extent=(-0.5, cols - 0.5, rows - 0.5, -0.5),
    )
    figure.colorbar(image, ax=axis, fraction=0.046, label=label)
    if marked is not None and len(marked):
        axis.plot(marked[:, 1], marked[:, 0], ".", color="tab:cyan", markersize=2)
    if goal is not None:
        axis.plot(goal[1], goal[0], "*", color="tab:green", markersize=14)
    axis.set_title(title)
    return _save(figure, path)


def plot_skill_path(
    walls: np.ndarray,
    positions: np.ndarray,
    horizon: int,
    path: Path,
    goal: tuple[float, float] | None = None,
    title: str = "",
) -> Path:
    """One episode's path (positions (T+1, 2) in (row, col)), each skill in its own colour.

    Skill i covers steps [i * horizon, (i + 1) * horizon]; a dot marks where each skill starts.
    """
    figure, axis = plt.subplots(figsize=(6, 6 * walls.shape[0] / walls.shape[1]))
    _draw_walls(axis, walls)
    n_skills = max(1, -(-(len(positions) - 1) // horizon))
    for i in range(n_skills):
        segment = positions[i * horizon : (i + 1) * horizon + 1]
        color = plt.cm.tab20(i % 20)
        axis.plot(segment[:, 1], segment[:, 0], color=color, linewidth=1.5)
        axis.plot(segment[0, 1], segment[0, 0], "o", color=color, markersize=4)
    axis.plot(positions[0, 1], positions[0, 0], "s", color="black", markersize=8, label="start")
    if goal is not None:
        axis.plot(goal[1], goal[0], "*", color="tab:red", markersize=14, label="goal")
    axis.legend(fontsize=7, loc="upper right")
    axis.set_title(title or f"{n_skills} skills of {horizon} steps")
    return _save(figure, path)
