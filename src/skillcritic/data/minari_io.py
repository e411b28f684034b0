"""Local Minari datasets: atomic writing, checked loading. Never downloads anything."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import gymnasium
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer

from skillcritic.errors import UserError


class DatasetError(UserError, RuntimeError):
    """A dataset is missing, corrupt, or would be overwritten; the message names the fix."""


def dataset_path(data_dir: str | Path, dataset_id: str) -> Path:
    """Where Minari keeps ``dataset_id`` under the root ``data_dir``."""
    namespace, _, name = dataset_id.rpartition("/")
    return Path(data_dir) / namespace / name


def is_minari_dataset(path: Path) -> bool:
    """True if ``path`` holds a Minari dataset (its ``data/metadata.json``)."""
    return (path / "data" / "metadata.json").is_file()


@contextlib.contextmanager
def minari_root(data_dir: str | Path) -> Iterator[None]:
    """Point Minari at ``data_dir`` (it reads ``MINARI_DATASETS_PATH`` at call time)."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(data_dir).resolve())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def check_writable(data_dir: str | Path, dataset_id: str, overwrite: bool) -> Path:
    """The target folder of ``dataset_id``, after refusing anything that must not be replaced."""
    target = dataset_path(data_dir, dataset_id)
    if target.exists() and not is_minari_dataset(target):
        raise DatasetError(
            f"{target} exists but is not a Minari dataset; move it away or choose another "
            "paths.data_dir"
        )
    if target.exists() and not overwrite:
        raise DatasetError(
            f"dataset {dataset_id} already exists in {target}; pass overwrite=true to replace "
            "it, or choose another paths.data_dir"
        )
    return target


def write_dataset(
    data_dir: str | Path,
    dataset_id: str,
    episodes: Sequence[EpisodeBuffer],
    observation_space: gymnasium.spaces.Space,
    action_space: gymnasium.spaces.Space,
    description: str,
    overwrite: bool = False,
    eval_env: str | gymnasium.envs.registration.EnvSpec | None = None,
) -> Path:
    """Write ``episodes`` as the local Minari dataset ``dataset_id`` under ``data_dir``.

    The dataset is built in a staging folder beside the target and moved into place with one
    rename, so an interrupted write never leaves a half dataset and an existing dataset is
    only replaced (with ``overwrite``) once the new one is complete.
    """
    target = check_writable(data_dir, dataset_id, overwrite)
    staging = Path(data_dir) / f".staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        with minari_root(staging), warnings.catch_warnings():
            # Demonstrations come from scripted controllers, not from one env: no env spec.
            warnings.filterwarnings("ignore", message="env_spec is None")
            warnings.filterwarnings("ignore", message="`eval_env` is set to None")
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=list(episodes),
                eval_env=eval_env,
                observation_space=observation_space,
                action_space=action_space,
                algorithm_name="skillcritic-data",
                author="skillcritic",
                author_email="skillcritic@users.noreply.github.com",
                code_permalink="https://github.com/skillcritic/skillcritic",
                description=description,
                data_format="hdf5",
            )
        built = dataset_path(staging, dataset_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        namespace_meta = built.parent / "namespace_metadata.json"
        if namespace_meta.is_file() and not (target.parent / namespace_meta.name).exists():
            shutil.copy2(namespace_meta, target.parent / namespace_meta.name)
        if target.exists():  # overwrite: swap the old dataset out only now
            old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
            target.rename(old)
            built.rename(target)
            shutil.rmtree(old)
        else:
            built.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_dataset(data_dir: str | Path, dataset_id: str, make_hint: str) -> minari.MinariDataset:
    """Load the local dataset ``dataset_id``; a missing or corrupt one is a ``DatasetError``.

    ``make_hint`` is the command that creates the dataset, named in the error.
    """
    path = dataset_path(data_dir, dataset_id)
    if not path.exists():
        raise DatasetError(
            f"no dataset {dataset_id} in {Path(data_dir)}; create it with: {make_hint}"
        )
    if not is_minari_dataset(path):
        raise DatasetError(
            f"{path} exists but is not a Minari dataset; delete it and run: {make_hint}"
        )
    with minari_root(data_dir):
        try:
            dataset = minari.load_dataset(dataset_id)
            # Open the data file now, so that a corrupt one fails here and not mid-training.
            next(iter(dataset.storage.get_episode_metadata(dataset.episode_indices[:1])), None)
            return dataset
        except Exception as error:  # corrupt files: h5py / json errors of many kinds
            raise DatasetError(
                f"dataset {dataset_id} in {path} cannot be read ({error}); delete it and run: "
                f"{make_hint}"
            ) from error


def episode_options(dataset: minari.MinariDataset) -> list[dict[str, np.ndarray]]:
    """The reset options stored with each episode (the maze: ``walls``, ``start``, ``goal``)."""
    metadata = dataset.storage.get_episode_metadata(dataset.episode_indices)
    return [m.get("options", {}) for m in metadata]
