"""The console scripts, run as a user runs them: real subprocesses in a fresh folder."""

import os
import subprocess
from pathlib import Path

import minari
import numpy as np
import pytest
import yaml

from conftest import BIN
from skillcritic.data.minari_io import minari_root

SMALL = ["env=maze", "data=small", "data.episodes=3", "data.workers=1", "env.demos.layout_size=8"]


def run(command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [str(BIN / command), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("command", ["skillcritic-data", "skillcritic-prior", "skillcritic-rl"])
def test_help_and_cfg_job(command: str, tmp_path: Path) -> None:
    shown = run(command, "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "env: maze, maze_nav, maze_traj" in shown.stdout
    job = run(command, "--cfg", "job", "seed=3", "prefix=exp", cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    cfg = yaml.safe_load(job.stdout)
    assert cfg["seed"] == 3 and cfg["prefix"] == "exp" and cfg["env"]["task"] == "spirl"
    assert cfg["paths"] == {"data_dir": "data", "outputs": "outputs"}
    assert not (tmp_path / "outputs").exists()  # --cfg runs nothing


def test_rl_without_a_trained_prior_names_the_command(tmp_path: Path) -> None:
    done = run("skillcritic-rl", "env=maze_nav", "agent=spirl", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "skillcritic-prior env=maze prior=open_loop" in done.stderr  # the maze priors
    assert len(done.stderr.strip().splitlines()) == 1


def test_collect_writes_a_loadable_dataset_and_run_folder(tmp_path: Path) -> None:
    done = run("skillcritic-data", *SMALL, "seed=5", "prefix=t", "paths.data_dir=ds", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "skillcritic/maze-demos-small-v0"  # stdout carries the id only
    assert "controller success 100.0%" in done.stderr and "transitions/s" in done.stderr
    with minari_root(tmp_path / "ds"):
        dataset = minari.load_dataset("skillcritic/maze-demos-small-v0")
    assert dataset.total_episodes == 3
    episode = next(dataset.iterate_episodes())
    assert episode.observations.shape[1] == 4 and episode.actions.shape[1] == 2
    assert np.abs(episode.actions).max() <= 1.0
    run_dir = tmp_path / "outputs/data/maze/small/t/seed5"
    assert (run_dir / ".hydra/config.yaml").is_file() and (
        run_dir / "skillcritic-data.log"
    ).is_file()

    again = run("skillcritic-data", *SMALL, "seed=5", "paths.data_dir=ds", cwd=tmp_path)
    assert again.returncode == 2 and "overwrite=true" in again.stderr
    kept = run("skillcritic-data", *SMALL, "paths.data_dir=ds", "data.exist_ok=true", cwd=tmp_path)
    assert kept.returncode == 0 and "kept it" in kept.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=abc", "seed must be an integer"),
        ("data.workers=0", "data.workers must be an integer >= 1"),
        ("data.episodes=-1", "data.episodes must be an integer >= 1"),
        ("env.task=moon", "spirl"),
        ("+env.kwargs.layout=missing.txt", "missing.txt"),
        ("env.demos.min_steps=5000", "min_steps"),
    ],
)
def test_bad_input_is_one_clear_line(override: str, message: str, tmp_path: Path) -> None:
    done = run("skillcritic-data", *SMALL, override, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "data").exists()


def test_unknown_env_lists_the_choices(tmp_path: Path) -> None:
    done = run("skillcritic-data", "env=moon", cwd=tmp_path)
    assert done.returncode != 0
    assert "Could not find 'env/moon'" in done.stderr and "maze_nav" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_multirun_sweep_folders_do_not_collide(launcher: str, tmp_path: Path) -> None:
    done = run(
        "skillcritic-data",
        "-m",
        f"hydra/launcher={launcher}",
        *SMALL,
        "seed=0,1",
        "paths.data_dir=ds",
        "data.dataset_id=skillcritic/sweep-${seed}-v0",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    sweeps = list((tmp_path / "outputs/multirun/data").iterdir())
    assert len(sweeps) == 1 and {p.name for p in sweeps[0].iterdir()} >= {"0", "1", "multirun.yaml"}
    assert {p.name for p in (tmp_path / "ds/skillcritic").iterdir()} >= {"sweep-0-v0", "sweep-1-v0"}
