"""How far a skill prior explores on its own: the prior as the policy on a maze task.

    .venv/bin/python benchmarks/prior_coverage.py CHECKPOINT [--episodes 24] [--task spirl]
        [--skill-scale 2] [--skill-temperature 1.3]
    .venv/bin/python benchmarks/prior_coverage.py --planner [--goal-cells 10] [--episodes 100]
    .venv/bin/python benchmarks/prior_coverage.py --random [--episodes 100]
    .venv/bin/python benchmarks/prior_coverage.py --replay RUN/checkpoints/last.ckpt [--block 50000]

Runs ``--episodes`` episodes (2000 steps) of the prior (sampled skills, as ``mode=check``; with
``--skill-scale S`` the skills are ``S·tanh(u)``, ``u ~ p(z | s)``, as the RL agents' HL policy
acts at initialisation; ``--skill-temperature T`` draws ``u ~ N(μ, (T·σ)²)``, a policy with the
prior's mean and a wider or narrower spread, 5·(T² − 1 − 2 ln T) nats per skill from the prior
with 10 latent dimensions) and prints per episode the distinct cells visited (positions rounded
to cells), the farthest cell from the start in maze steps (BFS over free cells) and the closest
approach to the goal, with their means and the success rate (docs/results.md records the
numbers).

``--planner`` runs the ideal demonstration-like explorer instead: the demonstrations' planner and
PD controller driving from goal to goal, each goal a random free cell (within ``--goal-cells``
maze steps, if given) that the explorer does not know is not the task's. It bounds what a prior
that imitates the demonstrations perfectly, but cannot see the demonstrator's goal, can find.
``--random`` drives uniformly random actions in [-1, 1]² every step: flat SAC in its warm-up, and
what its maximum-entropy policy starts from.

``--replay`` measures an RL run instead: the training episodes in a hierarchical agent's
checkpoint (``last.ckpt`` with its buffers), read from the HL replay (one position per skill, so
the distinct cells count the skills' start cells), grouped by the env step each episode began at
(``--block`` env steps a row): the same figures, plus how many episodes were rewarded.
"""

from __future__ import annotations

import argparse
from collections import deque
from pathlib import Path

import gymnasium
import numpy as np
import torch

import skillcritic  # noqa: F401  (registers the maze)
from skillcritic.envs.maze.demos import DemoConfig, drive
from skillcritic.envs.maze.physics import MazePhysics
from skillcritic.envs.maze.planner import shortest_path
from skillcritic.prior.policy import PriorPolicy, run_prior_episodes
from skillcritic.train_prior import load_prior

Cell = tuple[int, int]


def maze_distances(walls: np.ndarray, start: Cell) -> dict[Cell, int]:
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


def planner_paths(task, episodes: int, goal_cells: int | None, steps: int) -> list[np.ndarray]:
    """Positions (T, 2) of the goal-to-goal planner explorer, one episode per seed."""
    walls = np.asarray(task.walls)
    paths = []
    for episode in range(episodes):
        rng = np.random.default_rng(episode)
        physics = MazePhysics(walls)
        physics.reset(np.asarray(task.start, dtype=np.float64), np.zeros(2))
        here: Cell = tuple(task.start)
        positions = [physics.position.copy()]
        while len(positions) <= steps:
            reachable = maze_distances(walls, here)
            goals = [c for c, d in reachable.items() if 0 < d <= (goal_cells or len(reachable))]
            goal = goals[rng.integers(len(goals))]
            waypoints = shortest_path(walls, here, goal)[1:].astype(np.float64)
            waypoints[:-1] += rng.uniform(-0.1, 0.1, waypoints[:-1].shape)
            left = steps + 1 - len(positions)
            states, _, _, _ = drive(
                physics, waypoints, DemoConfig(max_steps=max(left, 2), min_steps=1)
            )
            positions.extend(states[1 : left + 1, :2])
            here = goal
        paths.append(np.asarray(positions))
    return paths


def random_paths(task, episodes: int, seed: int, steps: int) -> list[np.ndarray]:
    """Positions (T, 2) under uniformly random actions, one episode per seed."""
    paths = []
    for episode in range(episodes):
        rng = np.random.default_rng(seed + episode)
        physics = MazePhysics(np.asarray(task.walls))
        physics.reset(np.asarray(task.start, dtype=np.float64), np.zeros(2))
        positions = [physics.position.copy()]
        for action in rng.uniform(-1.0, 1.0, (steps, 2)):
            physics.step(action)
            positions.append(physics.position.copy())
        paths.append(np.asarray(positions))
    return paths


def hl_replay(checkpoint: Path, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict]:
    """Fields ``names`` of a hierarchical RL checkpoint's HL replay, oldest row first, and its
    collector's state (``env_steps``, ``hl_steps``, ...)."""
    if not checkpoint.is_file():
        raise SystemExit(f"error: {checkpoint} not found")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    experience = state["skillcritic"]["experience"]
    if "buffers" not in experience:
        raise SystemExit(f"error: {checkpoint} holds no replay (run with save_buffers=true)")
    replay = experience["buffers"]["hl"]["state"]
    size = replay["size"]
    order = np.arange(size)
    if size == replay["capacity"]:  # full ring: the oldest row sits at the write position
        order = np.roll(order, -replay["pos"])
    fields = {name: replay["fields"][name][:size].numpy()[order] for name in names}
    return fields, experience["collector"]


def replay_paths(checkpoint: Path) -> tuple[list[np.ndarray], list[int], list[bool]]:
    """Positions (one per skill) of the training episodes in a hierarchical RL checkpoint's HL
    replay, the env step each began at, and whether it was rewarded.

    The vector env interleaves its envs' rows, so episodes are rebuilt by chaining each row to
    the next row whose state ([x, y, vx, vy]) is its next state; a terminated or truncated row
    ends its episode. Two episodes that meet in exactly the same state (agents pinned in the same
    corner) may swap their continuations there, which leaves the counts right.
    """
    fields, collector = hl_replay(
        checkpoint, ("state", "next_state", "terminated", "truncated", "reward")
    )
    states, next_states, rewards = fields["state"], fields["next_state"], fields["reward"]
    ends = fields["terminated"] | fields["truncated"]
    size = len(states)
    horizon = collector["env_steps"] // max(collector["hl_steps"], 1)
    first_row = collector["hl_steps"] - size  # rows that fell out of a full buffer
    episodes: list[list[int]] = []
    waiting: dict[bytes, list[int]] = {}  # next state of unfinished episodes -> those episodes
    for row in range(size):
        queue = waiting.get(states[row].tobytes())
        if queue:
            episode = queue.pop(0)
        else:
            episode = len(episodes)
            episodes.append([])
        episodes[episode].append(row)
        if not ends[row]:
            waiting.setdefault(next_states[row].tobytes(), []).append(episode)
    positions, next_positions = states[:, :2], next_states[:, :2]
    paths = [np.concatenate([positions[rows], next_positions[rows[-1:]]]) for rows in episodes]
    starts = [(first_row + rows[0]) * horizon for rows in episodes]
    rewarded = [bool(rewards[rows].sum() > 0) for rows in episodes]
    return paths, starts, rewarded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, nargs="?")
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--task", default="spirl")
    parser.add_argument(
        "--seed",
        type=int,
        default=100,
        help="seeds the prior's skill samples (and env resets) or --random's actions; "
        "--planner seeds each episode by its index",
    )
    parser.add_argument("--skill-scale", type=float, default=None)
    parser.add_argument("--skill-temperature", type=float, default=1.0)
    parser.add_argument("--planner", action="store_true")
    parser.add_argument("--goal-cells", type=int, default=None)
    parser.add_argument("--random", action="store_true")
    parser.add_argument("--replay", type=Path, default=None, help="an RL run's last.ckpt")
    parser.add_argument("--block", type=int, default=100000, help="env steps per --replay row")
    args = parser.parse_args()
    if args.planner + args.random + (args.checkpoint is not None) + (args.replay is not None) != 1:
        parser.error("give one of a prior CHECKPOINT, --planner, --random or --replay")
    if args.skill_temperature <= 0:
        parser.error(f"--skill-temperature must be > 0 (it scales σ), got {args.skill_temperature}")
    torch.set_num_threads(1)
    n_envs = args.episodes if args.checkpoint is not None else 1
    envs = [gymnasium.make("skillcritic/Maze-v0", task=args.task) for _ in range(n_envs)]
    task = envs[0].unwrapped.task
    goal = np.asarray(task.goal, dtype=np.float64)
    if args.replay is not None:
        paths, starts, rewarded = replay_paths(args.replay)
        print_replay_blocks(args.replay, task, paths, starts, rewarded, args.block)
        return
    if args.random:
        name = "uniform random actions"
        paths = random_paths(task, args.episodes, args.seed, task.episode_steps)
    elif args.planner:
        within = f" within {args.goal_cells} maze steps" if args.goal_cells else ""
        name = f"planner to random goals{within}"
        paths = planner_paths(task, args.episodes, args.goal_cells, task.episode_steps)
    else:
        policy = PriorPolicy(
            load_prior(args.checkpoint), generator=torch.Generator().manual_seed(args.seed)
        )
        name = str(args.checkpoint)
        sample, temperature, scale = policy._sample, args.skill_temperature, args.skill_scale
        if temperature != 1.0:
            name += f" (σ × {temperature:g})"
        if scale is not None:
            name += f" (skills {scale:g}·tanh(u))"

        def skill(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            u = sample(mu, temperature * sigma)
            return u if scale is None else scale * torch.tanh(u)

        policy._sample = skill
        rollouts = run_prior_episodes(policy, envs, args.seed)
        paths, successes = list(rollouts.positions), list(rollouts.successes)
    if args.checkpoint is None:  # success as the env counts it: a step within the goal radius
        successes = [
            bool((np.linalg.norm(p[1:] - goal, axis=1) <= task.goal_radius).any()) for p in paths
        ]
    cells, farthest, closest = coverage(task, paths)
    print(f"{name} on {args.task}: {args.episodes} episodes, torch {torch.__version__}")
    print(f"  distinct cells   {np.mean([len(c) for c in cells]):.1f}  {[len(c) for c in cells]}")
    goal_steps = maze_distances(task.walls, tuple(task.start))[tuple(task.goal)]
    print(f"  farthest (steps) {np.mean(farthest):.1f}  {farthest}  (goal: {goal_steps})")
    print(f"  closest to goal  {np.mean(closest):.1f} cells")
    print(f"  success          {np.mean(successes):.2f} ({sum(successes)}/{len(successes)})")


def coverage(task, paths: list[np.ndarray]) -> tuple[list[set[Cell]], list[int], list[float]]:
    """Per path: the cells visited, the farthest of them from the start in maze steps, and the
    closest approach to the goal in cells."""
    distance = maze_distances(task.walls, tuple(task.start))
    goal = np.asarray(task.goal, dtype=np.float64)
    cells = [set(map(tuple, np.rint(path).astype(int))) for path in paths]
    farthest = [max(distance.get(cell, 0) for cell in visited) for visited in cells]
    closest = [float(np.linalg.norm(path - goal, axis=1).min()) for path in paths]
    return cells, farthest, closest


def print_replay_blocks(
    checkpoint: Path,
    task,
    paths: list[np.ndarray],
    starts: list[int],
    rewarded: list[bool],
    block: int,
) -> None:
    """One row per ``block`` env steps of a run's training episodes (``--replay``)."""
    cells, farthest, closest = coverage(task, paths)
    goal_steps = maze_distances(task.walls, tuple(task.start))[tuple(task.goal)]
    print(f"training episodes in {checkpoint}: {len(paths)}, goal {goal_steps} maze steps out")
    print("  env steps from  episodes  distinct cells  farthest (max)  closest to goal  rewarded")
    starts_array = np.asarray(starts)
    for begin in range(0, int(starts_array.max()) + 1, block):
        chosen = np.flatnonzero((starts_array >= begin) & (starts_array < begin + block))
        if len(chosen) == 0:
            continue
        far = [farthest[i] for i in chosen]
        print(
            f"  {begin:>14d}  {len(chosen):>8d}  {np.mean([len(cells[i]) for i in chosen]):>14.1f}"
            f"  {np.mean(far):>8.1f} ({max(far):>2d})"
            f"  {np.mean([closest[i] for i in chosen]):>15.1f}"
            f"  {sum(rewarded[i] for i in chosen):>8d}"
        )


if __name__ == "__main__":
    main()
