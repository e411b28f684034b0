"""Demonstration collection: generate episodes over worker processes, write a Minari dataset."""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import numpy as np
from minari.data_collector import EpisodeBuffer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from skillcritic.data.minari_io import check_writable, write_dataset
from skillcritic.logs import stderr_console

log = logging.getLogger(__name__)


@dataclass
class Demo:
    """One episode as stored in a dataset: ``states`` (T+1, ds) and ``actions`` (T, da) float32,
    ``rewards`` (T,), ``success``, and ``options`` (arrays stored with the episode, e.g. what
    rebuilds a maze, see ``data.minari_io.episode_options``)."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    success: bool
    options: dict[str, np.ndarray]


@dataclass
class DemoOutcome:
    """What a generator returns per episode index: the kept demonstration (or None) and what it
    took (attempts, successful attempts, seconds of simulation)."""

    demo: Demo | None
    attempts: int
    successes: int
    physics_seconds: float


@dataclass
class CollectionSummary:
    """What a collection produced and how fast."""

    dataset_id: str
    path: Path
    episodes: int
    steps: int
    attempts: int
    successes: int
    failed_episodes: int
    seconds: float
    physics_seconds: float
    workers: int

    @property
    def success_rate(self) -> float:
        """Fraction of controller attempts that reached their goal."""
        return self.successes / max(self.attempts, 1)

    @property
    def steps_per_second(self) -> float:
        """Kept transitions per wall-clock second of generation (all workers together)."""
        return self.steps / max(self.seconds, 1e-9)


def generate_parallel(
    generate: Callable[[int], DemoOutcome], n_episodes: int, workers: int, label: str
) -> list[DemoOutcome]:
    """``[generate(i) for i in range(n_episodes)]`` over ``workers`` processes, in order, with a
    progress bar. ``generate`` must be picklable and depend only on its index (reproducibility)."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    outcomes: list[DemoOutcome] = []
    with Progress(*columns, console=stderr_console(), transient=False) as progress:
        task = progress.add_task(label, total=n_episodes)
        if workers == 1:
            results = map(generate, range(n_episodes))
            pool = None
        else:
            # spawn: workers start clean (no inherited threads or GL contexts).
            pool = multiprocessing.get_context("spawn").Pool(workers)
            chunk = max(1, min(64, n_episodes // (8 * workers)))
            results = pool.imap(generate, range(n_episodes), chunksize=chunk)
        try:
            for outcome in results:
                outcomes.append(outcome)
                progress.advance(task)
        finally:
            if pool is not None:
                pool.terminate()
    return outcomes


def to_episode_buffer(index: int, demo: Demo) -> EpisodeBuffer:
    """A Minari episode: the demo ends ``terminated`` at its goal, ``truncated`` otherwise."""
    n_steps = len(demo.actions)
    terminations = np.zeros(n_steps, dtype=bool)
    truncations = np.zeros(n_steps, dtype=bool)
    (terminations if demo.success else truncations)[-1] = True
    return EpisodeBuffer(
        id=index,
        options=demo.options,
        observations=demo.states,
        actions=demo.actions,
        rewards=demo.rewards,
        terminations=terminations,
        truncations=truncations,
    )


def collect_dataset(
    generate: Callable[[int], DemoOutcome],
    n_episodes: int,
    workers: int,
    data_dir: str | Path,
    dataset_id: str,
    observation_space: gymnasium.spaces.Space,
    action_space: gymnasium.spaces.Space,
    description: str,
    overwrite: bool = False,
    eval_env: str | gymnasium.envs.registration.EnvSpec | None = None,
) -> CollectionSummary:
    """Generate ``n_episodes`` demonstrations and write them as a local Minari dataset."""
    if n_episodes < 1:
        raise ValueError(f"data.episodes must be >= 1, got {n_episodes}")
    if workers < 1:
        raise ValueError(f"data.workers must be >= 1, got {workers}")
    check_writable(data_dir, dataset_id, overwrite)  # refuse before spending minutes
    start = time.perf_counter()
    outcomes = generate_parallel(generate, n_episodes, workers, f"collecting {dataset_id}")
    seconds = time.perf_counter() - start
    demos: Sequence[Demo] = [o.demo for o in outcomes if o.demo is not None]
    if not demos:
        raise RuntimeError("no demonstration succeeded; check the demonstration settings")
    path = write_dataset(
        data_dir,
        dataset_id,
        [to_episode_buffer(i, d) for i, d in enumerate(demos)],
        observation_space,
        action_space,
        description,
        overwrite,
        eval_env,
    )
    return CollectionSummary(
        dataset_id=dataset_id,
        path=path,
        episodes=len(demos),
        steps=sum(len(d.actions) for d in demos),
        attempts=sum(o.attempts for o in outcomes),
        successes=sum(o.successes for o in outcomes),
        failed_episodes=n_episodes - len(demos),
        seconds=seconds,
        physics_seconds=sum(o.physics_seconds for o in outcomes),
        workers=workers,
    )
