"""Console entry points: thin Hydra mains over the per-command functions.

``collect_data.collect_data(cfg)`` and ``train_prior.train_prior(cfg)`` / ``check_prior(cfg)``
are, with this module, the only code that reads ``DictConfig``; everything below takes typed
arguments. A ``UserError`` (bad config value, missing or corrupt input) becomes one line on
stderr and exit code 2; anything else is a bug and raises.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import skillcritic  # noqa: F401  (registers the envs)
from skillcritic.collect_data import collect_data
from skillcritic.errors import UserError

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
                sys.stderr.write(f"error: {error}\n")  # one plain line: no wrapping, no traceback
                sys.exit(USER_ERROR_EXIT)

        @functools.wraps(run)
        def main() -> None:
            hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(
                task
            )()

        return main

    return decorate


@_hydra_entry("collect")
def data_main(cfg: DictConfig) -> None:
    """``skillcritic-data env=maze [data=small] [data.episodes=N] [data.workers=W] [seed=S]``."""
    collect_data(cfg)


@_hydra_entry("train_prior")
def prior_main(cfg: DictConfig) -> None:
    """``skillcritic-prior env=maze prior=closed_loop [mode=check]``."""
    from skillcritic.train_prior import check_prior, train_prior  # torch: only where needed

    if cfg.mode == "train":
        train_prior(cfg)
    elif cfg.mode == "check":
        check_prior(cfg)
    else:
        raise UserError(f"unknown mode {cfg.mode!r}; use mode=train or mode=check")


@_hydra_entry("train_rl")
def rl_main(cfg: DictConfig) -> None:
    """``skillcritic-rl env=maze agent=skill_critic [mode=val|rollout] [resume=latest]``."""
    from skillcritic.train_rl import run_rl  # torch: only where needed

    run_rl(cfg)
