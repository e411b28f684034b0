"""Demonstration datasets: round trip through Minari, reproducibility, atomic and safe writes."""

from pathlib import Path

import gymnasium
import minari
import numpy as np
import pytest

from skillcritic.data.collect import collect_dataset, to_episode_buffer
from skillcritic.data.minari_io import (
    DatasetError,
    dataset_path,
    episode_options,
    load_dataset,
    minari_root,
)
from skillcritic.envs.maze.demos import DemoConfig, MazeDemoGenerator, generate_demo

CONFIG = DemoConfig(layout_size=8, min_steps=10)
STATE = gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)
ACTION = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
DATASET = "skillcritic/test-demos-v0"


def collect(data_dir: Path, seed: int = 0, episodes: int = 4, workers: int = 1, **kwargs):
    return collect_dataset(
        MazeDemoGenerator(seed, CONFIG),
        episodes,
        workers,
        data_dir,
        DATASET,
        STATE,
        ACTION,
        "test",
        **kwargs,
    )


def episodes_of(data_dir: Path) -> list:
    return list(load_dataset(data_dir, DATASET, "make it").iterate_episodes())


def test_round_trip_gives_the_generated_arrays(tmp_path: Path) -> None:
    summary = collect(tmp_path)
    assert summary.episodes == 4 and summary.successes == summary.attempts == 4
    with minari_root(tmp_path):  # the documented way: MINARI_DATASETS_PATH + load_dataset
        dataset = minari.load_dataset(DATASET)
    assert dataset.total_episodes == 4 and dataset.total_steps == summary.steps
    options = episode_options(dataset)
    for index, (episode, stored) in enumerate(
        zip(dataset.iterate_episodes(), options, strict=True)
    ):
        demo = generate_demo(0, index, CONFIG).demo
        np.testing.assert_array_equal(episode.observations, demo.states)
        np.testing.assert_array_equal(episode.actions, demo.actions)
        np.testing.assert_array_equal(episode.rewards, demo.rewards)
        assert episode.terminations[-1] and not episode.terminations[:-1].any()
        assert not episode.truncations.any()
        np.testing.assert_array_equal(stored["walls"], demo.options["walls"])
        np.testing.assert_array_equal(stored["goal"], demo.options["goal"])
        assert episode.observations.dtype == np.float32
        assert len(episode.observations) == len(episode.actions) + 1


def test_failed_demo_is_truncated_not_terminated() -> None:
    demo = generate_demo(0, 0, CONFIG).demo
    demo.success = False
    buffer = to_episode_buffer(0, demo)
    assert buffer.truncations[-1] and not buffer.terminations.any()


def test_worker_count_does_not_change_the_dataset(tmp_path: Path) -> None:
    collect(tmp_path / "one", workers=1)
    collect(tmp_path / "two", workers=2)
    for a, b in zip(episodes_of(tmp_path / "one"), episodes_of(tmp_path / "two"), strict=True):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)


def test_existing_dataset_is_kept_unless_overwrite(tmp_path: Path) -> None:
    collect(tmp_path, seed=0)
    before = episodes_of(tmp_path)[0].actions
    with pytest.raises(DatasetError, match="overwrite=true"):
        collect(tmp_path, seed=1)
    np.testing.assert_array_equal(episodes_of(tmp_path)[0].actions, before)
    collect(tmp_path, seed=1, overwrite=True)
    assert not np.array_equal(episodes_of(tmp_path)[0].actions, before)
    assert not list(tmp_path.glob(".staging-*")) and not list(tmp_path.rglob(".old-*"))


def test_foreign_folder_is_never_replaced(tmp_path: Path) -> None:
    target = dataset_path(tmp_path, DATASET)
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a Minari dataset"):
        collect(tmp_path, overwrite=True)
    assert (target / "notes.txt").read_text() == "mine"
    with pytest.raises(DatasetError, match="not a Minari dataset"):
        load_dataset(tmp_path, DATASET, "skillcritic-data env=maze")


def test_missing_dataset_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="skillcritic-data env=maze"):
        load_dataset(tmp_path, DATASET, "skillcritic-data env=maze")


def test_corrupt_dataset_is_a_clear_error(tmp_path: Path) -> None:
    collect(tmp_path)
    (dataset_path(tmp_path, DATASET) / "data" / "main_data.hdf5").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="cannot be read"):
        load_dataset(tmp_path, DATASET, "skillcritic-data env=maze")


@pytest.mark.parametrize("bad", [{"n_episodes": 0}, {"workers": 0}])
def test_bad_counts_are_rejected(tmp_path: Path, bad: dict) -> None:
    args = {"n_episodes": 2, "workers": 1} | bad
    with pytest.raises(ValueError, match=">= 1"):
        collect_dataset(
            MazeDemoGenerator(0, CONFIG),
            args["n_episodes"],
            args["workers"],
            tmp_path,
            DATASET,
            STATE,
            ACTION,
            "test",
        )
