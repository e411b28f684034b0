"""Console entry points: thin Hydra mains over testable ``run_*(cfg)`` functions.

This is the only layer that reads ``DictConfig``; everything below takes typed arguments.
A ``UserError`` (bad config value, missing or corrupt input) becomes one log line and exit
code 2; anything else is a bug and raises.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium
import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

import skillcritic  # noqa: F401  (registers the envs)
from skillcritic.data.collect import CollectionSummary, collect_dataset
from skillcritic.data.minari_io import dataset_path, is_minari_dataset
from skillcritic.errors import UserError

log = logging.getLogger("skillcritic")

USER_ERROR_EXIT = 2

SWEEP_ID_VARIABLE = "SKILLCRITIC_SWEEP_ID"


def sweep_id() -> str:
    """``<date>_<time>_<pid>`` of the process that launched the sweep, fixed on first use.

    Launchers resolve ``hydra.sweep.dir`` again inside each job's process (joblib, submitit);
    the id travels to them through the environment, so all jobs of one sweep share one folder,
    while two sweeps started in the same second still get two.
    """
    if SWEEP_ID_VARIABLE not in os.environ:
        os.environ[SWEEP_ID_VARIABLE] = f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}"
    return os.environ[SWEEP_ID_VARIABLE]


OmegaConf.register_new_resolver("sweep_id", sweep_id, replace=True)


def config_dir() -> Path:
    """The Hydra config tree: ``skillcritic/conf`` in a wheel, the repo's ``conf/`` otherwise."""
    packaged = Path(__file__).parent / "conf"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "conf"  # editable install or checkout
    if checkout.is_dir():
        return checkout
    raise RuntimeError(f"skillcritic's config folder is missing: neither {packaged} nor {checkout}")


def check_common(cfg: DictConfig) -> None:
    """Validate the overrides shared by all commands."""
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise UserError(f"seed must be an integer, got {cfg.seed!r}; e.g. seed=0")
    if not isinstance(cfg.prefix, str) or not cfg.prefix or "/" in cfg.prefix:
        raise UserError(f"prefix must be a folder name, got {cfg.prefix!r}; e.g. prefix=my_exp")


def _hydra_entry(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], None]]:
    """Turn ``run(cfg)`` into a console script composing ``config_name``."""

    def decorate(run: Callable[[DictConfig], Any]) -> Callable[[], None]:
        def task(cfg: DictConfig) -> None:
            try:
                check_common(cfg)
                run(cfg)
            except UserError as error:
                # One plain line (no wrapping, no traceback) for the user; the log file too.
                logging.getLogger("skillcritic").debug("user error", exc_info=True)
                sys.stderr.write(f"error: {error}\n")
                sys.exit(USER_ERROR_EXIT)

        @functools.wraps(run)
        def main() -> None:
            hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(
                task
            )()

        return main

    return decorate


# ------------------------------------------------------------------------------------------
# skillcritic-data
# ------------------------------------------------------------------------------------------


def _demo_generator(cfg: DictConfig) -> tuple[Callable[[int], Any], gymnasium.spaces.Space]:
    """The env's demonstration generator and the observation space of its dataset."""
    if cfg.env.family == "maze":
        from skillcritic.envs.maze.demos import DemoConfig, MazeDemoGenerator

        options = OmegaConf.to_container(cfg.env.demos)
        options.pop("episodes")
        try:
            config = DemoConfig(**options)
        except (TypeError, ValueError) as error:
            raise UserError(f"invalid env.demos settings: {error}") from error
        state_space = gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        return MazeDemoGenerator(cfg.seed, config), state_space
    raise UserError(f"env {cfg.env.name} has no demonstration generator")


def _make_env(cfg: DictConfig) -> gymnasium.Env:
    """The env's target task, built once to check the env config."""
    kwargs = OmegaConf.to_container(cfg.env.kwargs)
    try:
        return gymnasium.make(cfg.env.id, task=cfg.env.task, **kwargs)
    except (TypeError, ValueError) as error:  # LayoutError is a ValueError and a UserError
        raise UserError(f"cannot make env {cfg.env.name}: {error}") from error


def run_collect(cfg: DictConfig) -> CollectionSummary | None:
    """``skillcritic-data``: collect the env's demonstrations into a local Minari dataset."""
    workers = cfg.data.workers if cfg.data.workers is not None else os.cpu_count() or 1
    if not isinstance(workers, int) or workers < 1:
        raise UserError(f"data.workers must be an integer >= 1, got {workers!r}")
    episodes = cfg.data.episodes
    if not isinstance(episodes, int) or episodes < 1:
        raise UserError(f"data.episodes must be an integer >= 1, got {episodes!r}")
    target = dataset_path(cfg.paths.data_dir, cfg.data.dataset_id)
    if cfg.data.get("exist_ok") and is_minari_dataset(target):
        log.info("dataset %s already exists in %s; kept it", cfg.data.dataset_id, target)
        sys.stdout.write(f"{cfg.data.dataset_id}\n")
        return None
    env = _make_env(cfg)
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


@_hydra_entry("collect")
def data_main(cfg: DictConfig) -> None:
    """``skillcritic-data env=maze [data=small] [data.episodes=N] [data.workers=W] [seed=S]``."""
    run_collect(cfg)


# ------------------------------------------------------------------------------------------
# skillcritic-prior, skillcritic-rl
# ------------------------------------------------------------------------------------------


@_hydra_entry("train_prior")
def prior_main(cfg: DictConfig) -> None:
    """``skillcritic-prior env=maze prior=closed_loop [mode=check]``."""
    from skillcritic.train_prior import check_prior, train_prior

    if cfg.mode == "train":
        train_prior(cfg)
    elif cfg.mode == "check":
        check_prior(cfg)
    else:
        raise UserError(f"unknown mode {cfg.mode!r}; use mode=train or mode=check")


@_hydra_entry("train_rl")
def rl_main(cfg: DictConfig) -> None:
    """``skillcritic-rl env=maze agent=skill_critic``."""
    raise UserError(
        "skillcritic-rl: RL training is not implemented yet; the config composed fine "
        "(see it with --cfg job)"
    )
