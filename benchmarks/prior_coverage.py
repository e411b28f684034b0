"""How far a skill prior explores on its own: the prior as the policy on a maze task.

    .venv/bin/python benchmarks/prior_coverage.py CHECKPOINT [--episodes 12] [--task spirl]

Runs ``--episodes`` episodes (2000 steps) of the prior (sampled skills, as ``mode=check``) and
prints per episode the distinct cells visited (positions rounded to cells), the farthest cell
from the start in maze steps (BFS over free cells) and the closest approach to the goal, with
their means and the success rate (docs/results.md records the numbers).
"""

from __future__ import annotations

import argparse
from collections import deque
from pathlib import Path

import gymnasium
import numpy as np
import torch

import skillcritic  # noqa: F401  (registers the maze)
from skillcritic.prior.policy import PriorPolicy, run_prior_episodes
from skillcritic.train_prior import load_prior


def maze_distances(walls: np.ndarray, start: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Maze steps (4-connected, free cells) from ``start`` to every reachable cell."""
    distance = {start: 0}
    queue = deque([start])
    while queue:
        row, col = queue.popleft()
        for d_row, d_col in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            cell = (row + d_row, col + d_col)
            inside = 0 <= cell[0] < walls.shape[0] and 0 <= cell[1] < walls.shape[1]
            if inside and not walls[cell] and cell not in distance:
                distance[cell] = distance[(row, col)] + 1
                queue.append(cell)
    return distance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--task", default="spirl")
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    envs = [gymnasium.make("skillcritic/Maze-v0", task=args.task) for _ in range(args.episodes)]
    policy = PriorPolicy(load_prior(args.checkpoint), generator=torch.Generator().manual_seed(0))
    rollouts = run_prior_episodes(policy, envs, args.seed)
    task = envs[0].unwrapped.task
    distance = maze_distances(task.walls, tuple(task.start))
    goal = np.asarray(task.goal, dtype=np.float64)
    cells = [set(map(tuple, np.rint(path).astype(int))) for path in rollouts.positions]
    farthest = [max(distance.get(cell, 0) for cell in visited) for visited in cells]
    closest = [float(np.linalg.norm(path - goal, axis=1).min()) for path in rollouts.positions]
    print(f"{args.checkpoint} on {args.task}: {args.episodes} episodes, torch {torch.__version__}")
    print(f"  distinct cells   {np.mean([len(c) for c in cells]):.1f}  {[len(c) for c in cells]}")
    goal_steps = distance[tuple(task.goal)]
    print(f"  farthest (steps) {np.mean(farthest):.1f}  {farthest}  (goal: {goal_steps})")
    print(f"  closest to goal  {np.mean(closest):.1f} cells")
    print(f"  success          {rollouts.success_rate:.2f}")


if __name__ == "__main__":
    main()
