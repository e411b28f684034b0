"""``skillcritic-data``: config -> demonstration generator -> local Minari dataset.

The top layer (reads the composed ``DictConfig``); also home of ``make_env``, which every
command uses to build the env's target task from its config.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from omegaconf import DictConfig, OmegaConf

from skillcritic.data.collect import CollectionSummary, collect_dataset
from skillcritic.data.minari_io import dataset_path, is_minari_dataset
from skillcritic.errors import UserError

log = logging.getLogger(__name__)


def env_kwargs(cfg: DictConfig, **overrides: object) -> dict[str, object]:
    """The keyword arguments of the env's target task (``env.kwargs``, ``env.task``, then
    ``overrides``)."""
    kwargs = OmegaConf.to_container(cfg.env.kwargs)
    if cfg.env.get("task") is not None:
        kwargs["task"] = cfg.env.task
    return kwargs | overrides


def make_env(cfg: DictConfig, **overrides: object) -> gymnasium.Env:
    """The env's target task (``overrides`` replace env kwargs, e.g. a start cell).

    Observations are always a Dict with a ``state`` (and, for image envs, ``view``): a plain
    gymnasium env with a Box observation is wrapped so that its observation is the ``state``.
    """
    try:
        env = gymnasium.make(cfg.env.id, **env_kwargs(cfg, **overrides))
    except (TypeError, ValueError, gymnasium.error.Error) as error:
        # LayoutError is a ValueError and a UserError; unknown ids are gymnasium errors
        raise UserError(f"cannot make env {cfg.env.name}: {error}") from error
    space = env.observation_space
    if isinstance(space, gymnasium.spaces.Box):
        state = gymnasium.spaces.Box(space.low, space.high, space.shape, np.float32)
        env = gymnasium.wrappers.TransformObservation(
            env,
            lambda obs: {"state": np.asarray(obs, np.float32)},
            gymnasium.spaces.Dict(state=state),
        )
    return env


def _demo_config(config_class: Callable[..., Any], cfg: DictConfig) -> Any:
    """``config_class`` built from ``env.demos`` (less ``episodes``); bad values: one line."""
    options = OmegaConf.to_container(cfg.env.demos)
    options.pop("episodes")
    try:
        return config_class(**options)
    except (TypeError, ValueError) as error:
        raise UserError(f"invalid env.demos settings: {error}") from error


def _demo_generator(cfg: DictConfig) -> tuple[Callable[[int], Any], gymnasium.spaces.Space]:
    """The env's demonstration generator and the observation space of its dataset."""
    if cfg.env.family == "maze":
        from skillcritic.envs.maze.demos import DemoConfig, MazeDemoGenerator

        state_space = gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        return MazeDemoGenerator(cfg.seed, _demo_config(DemoConfig, cfg)), state_space
    if cfg.env.family == "racing":
        from skillcritic.envs.racing.demos import DemoConfig as RacingDemoConfig
        from skillcritic.envs.racing.demos import RacingDemoGenerator
        from skillcritic.envs.racing.sim import N_FEATURES

        state_space = gymnasium.spaces.Box(-np.inf, np.inf, (N_FEATURES,), np.float32)
        config = _demo_config(RacingDemoConfig, cfg)
        return RacingDemoGenerator(cfg.seed, config), state_space
    raise UserError(f"env {cfg.env.name} has no demonstration generator")


def collect_data(cfg: DictConfig) -> CollectionSummary | None:
    """``skillcritic-data``: collect the env's demonstrations into a local Minari dataset."""
    workers = cfg.data.workers if cfg.data.workers is not None else os.cpu_count() or 1
    if not isinstance(workers, int) or workers < 1:
        raise UserError(f"data.workers must be an integer >= 1, got {workers!r}")
    episodes = cfg.data.episodes
    if not isinstance(episodes, int) or episodes < 1:
        raise UserError(f"data.episodes must be an integer >= 1, got {episodes!r}")
    target = dataset_path(cfg.paths.data_dir, cfg.data.dataset_id)
    if cfg.data.exist_ok and is_minari_dataset(target):
        log.info("dataset %s already exists in %s; kept it", cfg.data.dataset_id, target)
        sys.stdout.write(f"{cfg.data.dataset_id}\n")
        return None
    env = make_env(cfg)  # checks the env config before minutes of collection
    generate, observation_space = _demo_generator(cfg)
    summary = collect_dataset(
        generate,
        n_episodes=episodes,
        workers=workers,
        data_dir=cfg.paths.data_dir,
        dataset_id=cfg.data.dataset_id,
        observation_space=observation_space,
        action_space=env.action_space,
        description=f"{cfg.env.name} demonstrations (seed {cfg.seed}, {episodes} episodes)",
        overwrite=cfg.data.overwrite,
        eval_env=env.spec,
    )
    env.close()
    log.info(
        "wrote %d episodes, %d transitions to %s", summary.episodes, summary.steps, summary.path
    )
    log.info(
        "controller success %.1f%% (%d of %d attempts); %d episodes without a demonstration",
        100 * summary.success_rate,
        summary.successes,
        summary.attempts,
        summary.failed_episodes,
    )
    log.info(
        "%.1f s on %d workers: %.0f transitions/s, physics %.0f%% of worker time",
        summary.seconds,
        summary.workers,
        summary.steps_per_second,
        100 * summary.physics_seconds / max(summary.seconds * summary.workers, 1e-9),
    )
    log.info(
        "read it with MINARI_DATASETS_PATH=%s and minari.load_dataset(%r)",
        Path(cfg.paths.data_dir).resolve(),
        summary.dataset_id,
    )
    sys.stdout.write(f"{summary.dataset_id}\n")
    return summary
