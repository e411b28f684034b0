"""What a hierarchical RL run's HL critic values across the maze, checkpoint by checkpoint.

    .venv/bin/python benchmarks/critic_values.py RUN [--skills 128] [--every 50000]
        [--task spirl] [--pictures DIR]

For each ``RUN/checkpoints/step*.ckpt`` (a run with ``keep_checkpoints=true``; ``--every`` keeps
the steps that are multiples of it): the HL critic's ``max_z min_i Q_i(s, z)`` at every free
cell the goal can be reached from, at rest (``s = [row, col, 0, 0]``), the maximum over
``--skills`` skills drawn from the run's HL replay rows written before that checkpoint
(``RUN/checkpoints/last.ckpt`` with its buffers, the default ``save_buffers=true``). The cells
are split by whether the replay held a skill's start state in them by then. One row per
checkpoint: mean and maximum Q of the visited and of the unvisited cells, how many unvisited
cells the critic values above every visited one (extrapolation off the data), the goal's Q and
its rank among the cells, and the highest cell. ``--pictures DIR`` draws each checkpoint's values
over the maze (``values_stepN.png``, the visited cells dotted). docs/results.md (fifteenth to
eighteenth looks) records the numbers.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import gymnasium
import numpy as np
import torch
from omegaconf import OmegaConf
from prior_coverage import hl_replay  # a sibling script: benchmarks/ is on sys.path

import skillcritic  # noqa: F401  (registers the maze)
from skillcritic.envs.maze.planner import distance_to
from skillcritic.rl.module import RLModule
from skillcritic.train_rl import module_from_checkpoint, read_checkpoint
from skillcritic.viz.pictures import plot_cell_values

Cell = tuple[int, int]


def replay_skills(last: Path) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """The HL replay of a run's ``last.ckpt``, oldest row first: start cells (N, 2), skills
    (N, nz), and each row's HL step (its index among every row ever written)."""
    fields, collector = hl_replay(last, ("state", "z"))
    size = len(fields["z"])
    written = collector["hl_steps"] - size + np.arange(size)
    return np.rint(fields["state"][:, :2]).astype(np.int64), torch.from_numpy(fields["z"]), written


def step_checkpoints(run: Path, every: int | None) -> list[tuple[int, Path]]:
    """``(env step, path)`` of a run's ``step*.ckpt``, in order."""
    found = []
    for path in (run / "checkpoints").glob("step*.ckpt"):
        match = re.fullmatch(r"step(\d+)\.ckpt", path.name)
        if match and (every is None or int(match.group(1)) % every == 0):
            found.append((int(match.group(1)), path))
    if not found:
        raise SystemExit(
            f"error: no step*.ckpt in {run}/checkpoints (run with keep_checkpoints=true)"
        )
    return sorted(found)


@torch.no_grad()
def cell_values(module: RLModule, cells: np.ndarray, skills: torch.Tensor) -> np.ndarray:
    """``max_z min_i Q_i`` of the module's HL critic at each cell (row, col), at rest."""
    agent = module.agent
    states = torch.zeros(len(cells), agent.spec.state_dim)
    states[:, :2] = torch.as_tensor(cells, dtype=torch.float32)
    # every (cell, skill) pair in one batch: (C, Z, in) -> (C, Z)
    pairs = agent.hl_critic_input(
        {"state": states[:, None].expand(-1, len(skills), -1)},
        skills[None].expand(len(cells), -1, -1),
    )
    return agent.hl.critic.min(pairs).amax(dim=1).numpy()


def summary(values: np.ndarray, visited: np.ndarray, cells: np.ndarray, goal: Cell) -> str:
    """One table row: the visited and unvisited cells' Q, the unvisited cells above every
    visited one, the goal's Q and rank, the highest cell."""
    top_visited = values[visited].max()
    unvisited = values[~visited]
    off_data = "none"
    if len(unvisited):
        above = int((unvisited > top_visited).sum())
        off_data = f"{len(unvisited)}, {unvisited.mean():.1f} ({unvisited.max():.1f}), {above}"
    order = np.argsort(-values)
    goal_index = int(np.flatnonzero((cells == goal).all(axis=1))[0])
    rank = int(np.flatnonzero(order == goal_index)[0]) + 1
    best = tuple(int(v) for v in cells[order[0]])
    return (
        f"{visited.sum()}, {values[visited].mean():.1f} ({top_visited:.1f}) | {off_data} | "
        f"{values[goal_index]:.1f} ({rank}) | {best} {values[order[0]]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="an RL run folder (with checkpoints/)")
    parser.add_argument("--skills", type=int, default=128, help="replay skills per cell")
    parser.add_argument("--every", type=int, default=None, help="only steps divisible by it")
    parser.add_argument("--task", default=None, help="maze task (default: the run's env.task)")
    parser.add_argument("--pictures", type=Path, default=None, help="write values_stepN.png here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    task_name = args.task or _run_task(args.run)
    task = gymnasium.make("skillcritic/Maze-v0", task=task_name).unwrapped.task
    walls, goal = np.asarray(task.walls), tuple(int(v) for v in task.goal)
    free = np.argwhere(distance_to(walls, goal) >= 0)  # the cells the goal can be reached from
    checkpoints = step_checkpoints(args.run, args.every)
    replay_cells, replay_z, written = replay_skills(args.run / "checkpoints" / "last.ckpt")
    print(
        f"{args.run} on {task_name}: {len(free)} cells connected to the goal, Q at rest, max "
        f"over {args.skills} replay skills, torch {torch.__version__}, 1 thread"
    )
    print(
        "env step | visited: cells, mean Q (max) | unvisited: cells, mean Q (max), above the "
        "visited max | goal Q (rank) | highest cell"
    )
    for step, checkpoint in checkpoints:
        contents = read_checkpoint(checkpoint)
        hl_steps = contents["skillcritic"]["experience"]["collector"]["hl_steps"]
        rows = np.flatnonzero(written < hl_steps)
        if not len(rows):
            print(f"{step:>8} | no replay rows before this checkpoint in last.ckpt's buffer")
            continue
        pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
        skills = replay_z[rows[pick[: args.skills].numpy()]]
        values = cell_values(module_from_checkpoint(contents), free, skills)
        seen = np.zeros(walls.shape, dtype=bool)
        seen[tuple(replay_cells[rows].clip(0, np.array(walls.shape) - 1).T)] = True
        visited = seen[free[:, 0], free[:, 1]]
        print(f"{step:>8} | {summary(values, visited, free, goal)}")
        if args.pictures is not None:
            grid = np.full(walls.shape, np.nan)
            grid[free[:, 0], free[:, 1]] = values
            plot_cell_values(
                walls,
                grid,
                args.pictures / f"values_step{step}.png",
                "max_z Q_H(cell at rest, z)",
                goal,
                f"HL critic at {step} env steps (dots: cells in the replay)",
                marked=free[visited],
            )


def _run_task(run: Path) -> str:
    """The maze task a run trained on, from its Hydra config."""
    config = run / ".hydra" / "config.yaml"
    if not config.is_file():
        raise SystemExit(f"error: {config} not found; pass --task")
    return str(OmegaConf.load(config).env.task)


if __name__ == "__main__":
    main()
