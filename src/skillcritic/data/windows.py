"""Window datasets: contiguous (state, action) windows of demonstrations, sampled in memory.

A whole Minari dataset is read once into contiguous arrays (``EpisodeArrays``); a window of
``n`` actions is then ``states[t .. t+n]`` and ``actions[t .. t+n-1]`` of one episode, and a
batch of windows is a couple of fancy-indexing operations (``WindowSampler``). Starts are
uniform over all valid ``(episode, t)`` pairs, so long episodes weigh in proportion to their
windows (the reference drew one window per episode file). ``WindowDataModule`` splits episodes
into train / validation with a seed and serves endless reproducible training batches and a
fixed validation set.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import gymnasium
import lightning as L
import minari
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from skillcritic.data.minari_io import DatasetError, episode_options, load_dataset
from skillcritic.envs.maze.view import TRACKING_GAIN, MultiLayoutRaster, tracking_centres

Batch = dict[str, torch.Tensor]


CONSTANT_STD = 1e-6  # a state dimension with no larger std is constant in the data


def normalisation_statistics(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (float32) of ``states`` (N, ds) for state normalisation.

    A dimension that is constant in the data gets std 1, not ~0: the racing demonstrations never
    touch a wall, so their wall-hit flag is always 0, and dividing by a tiny std would turn the
    first wall contact of an RL car into an input of 10⁶ (it blew up the critics).
    """
    states = np.asarray(states, dtype=np.float64)
    mean, std = states.mean(axis=0), states.std(axis=0)
    return mean.astype(np.float32), np.where(std > CONSTANT_STD, std, 1.0).astype(np.float32)


def _flat_box_dim(space: gymnasium.spaces.Space, what: str, dataset_id: str) -> int:
    """The size of a flat Box space; anything else is a ``DatasetError``."""
    if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
        raise DatasetError(
            f"dataset {dataset_id}: {what} must be a flat Box array, got {space}; window "
            "datasets need vector observations and actions"
        )
    return int(space.shape[0])


@dataclass
class EpisodeArrays:
    """All episodes of a dataset in memory, as contiguous arrays.

    Episode ``e`` has ``lengths[e] = T_e`` actions ``actions[action_start[e] : + T_e]`` and
    ``T_e + 1`` states ``states[state_start[e] : + T_e + 1]``.

    Attributes:
        states: float32 (sum(T_e + 1), ds).
        actions: float32 (sum(T_e), da).
        state_start: int64 (E,) offset of each episode's first state.
        action_start: int64 (E,) offset of each episode's first action.
        lengths: int64 (E,) number of actions of each episode.
        walls: the maze layout of each episode (episode option ``walls``), or None.
        goals: float64 (E, 2) the goal cell of each episode (option ``goal``), or None.
    """

    states: np.ndarray
    actions: np.ndarray
    state_start: np.ndarray
    action_start: np.ndarray
    lengths: np.ndarray
    walls: list[np.ndarray] | None = None
    goals: np.ndarray | None = None

    @cached_property
    def view_centres(self) -> np.ndarray:
        """float64 (sum(T_e + 1), 2): where the view of each state is centred. The views trail
        the agent as the env's do: the tracking filter run over each episode
        (``envs.maze.view.tracking_centres``); computed once, shared by all samplers."""
        positions = self.states[:, :2]
        return tracking_centres(positions, self.state_start, self.lengths + 1, TRACKING_GAIN)

    @property
    def n_episodes(self) -> int:
        """Number of episodes ``E``."""
        return len(self.lengths)

    @property
    def state_dim(self) -> int:
        """Size of a state vector."""
        return int(self.states.shape[1])

    @property
    def action_dim(self) -> int:
        """Size of an action vector."""
        return int(self.actions.shape[1])

    def episode_of_states(self) -> np.ndarray:
        """int64 (sum(T_e + 1),): the episode of each row of ``states``."""
        return np.repeat(np.arange(self.n_episodes), self.lengths + 1)

    @classmethod
    def from_arrays(
        cls,
        states: Sequence[np.ndarray],
        actions: Sequence[np.ndarray],
        walls: list[np.ndarray] | None = None,
        goals: np.ndarray | None = None,
        name: str = "dataset",
    ) -> EpisodeArrays:
        """Concatenate per-episode ``states`` (T_e+1, ds) and ``actions`` (T_e, da); check them.

        Raises ``DatasetError`` (naming ``name`` and the episode) on non-finite values or
        mismatched lengths.
        """
        if len(states) == 0:
            raise DatasetError(f"{name} has no episodes")
        if len(states) != len(actions):
            raise DatasetError(f"{name}: {len(states)} state and {len(actions)} action episodes")
        lengths = np.array([len(a) for a in actions], dtype=np.int64)
        for index, (s, a) in enumerate(zip(states, actions, strict=True)):
            if s.ndim != 2 or a.ndim != 2 or len(s) != len(a) + 1:
                raise DatasetError(
                    f"{name}, episode {index}: expected (T+1, ds) states and (T, da) actions, "
                    f"got {s.shape} and {a.shape}"
                )
        state_array = np.concatenate(states).astype(np.float32, copy=False)
        action_array = np.concatenate(actions).astype(np.float32, copy=False)
        state_start = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
        action_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        for what, array, starts in (
            ("observations", state_array, state_start),
            ("actions", action_array, action_start),
        ):
            bad = ~np.isfinite(array).all(axis=1)
            if bad.any():
                row = int(np.argmax(bad))
                episode = int(np.searchsorted(starts, row, side="right") - 1)
                raise DatasetError(
                    f"{name}, episode {episode}: {what} contain NaN or inf (step "
                    f"{row - starts[episode]}); regenerate the dataset"
                )
        if walls is not None and len(walls) != len(lengths):
            raise DatasetError(f"{name}: {len(walls)} layouts for {len(lengths)} episodes")
        if goals is not None:
            goals = np.asarray(goals, dtype=np.float64).reshape(len(lengths), 2)
        return cls(state_array, action_array, state_start, action_start, lengths, walls, goals)

    @classmethod
    def from_minari(cls, dataset: minari.MinariDataset) -> EpisodeArrays:
        """Read every episode of ``dataset`` once; maze layouts and goals come from the episode
        options when every episode has them.

        Raises ``DatasetError`` when observations or actions are not flat Box arrays, or an
        episode holds NaN / inf (the message names the episode).
        """
        name = f"dataset {dataset.spec.dataset_id}"
        _flat_box_dim(dataset.observation_space, "the observation space", name)
        _flat_box_dim(dataset.action_space, "the action space", name)
        states, actions = [], []
        for episode in dataset.iterate_episodes():
            states.append(np.asarray(episode.observations))
            actions.append(np.asarray(episode.actions))
        options = episode_options(dataset)
        walls = goals = None
        if all("walls" in o for o in options):
            walls = [np.asarray(o["walls"]) for o in options]
        if all("goal" in o for o in options):
            goals = np.array([np.asarray(o["goal"], dtype=np.float64) for o in options])
        return cls.from_arrays(states, actions, walls, goals, name)


class WindowSampler:
    """Uniform windows of ``n_actions`` actions and ``n_actions + 1`` states over ``episodes``.

    Every ``(episode, t)`` with ``t + n_actions <= T_e`` is one window, all equally likely;
    windows never cross episode boundaries and shorter episodes contribute none.

    Args:
        arrays: the dataset in memory.
        episodes: ids of the episodes this sampler may use.
        n_actions: actions per window.
        with_views: also return the agent-centric raster view at each state (maze datasets:
            needs ``arrays.walls``; the agent is at ``states[..., :2]``, the view centre trails it
            as in the env: ``envs.maze.view.tracking_centres``).
        view_size, view_cells: pixels and cells per side of a view.
        view_threads: threads that render views (default: ``min(8, torch.get_num_threads())``).
    """

    def __init__(
        self,
        arrays: EpisodeArrays,
        episodes: np.ndarray,
        n_actions: int,
        with_views: bool = False,
        view_size: int = 32,
        view_cells: float = 4.0,
        view_threads: int | None = None,
    ) -> None:
        if n_actions < 1:
            raise ValueError(f"n_actions must be >= 1, got {n_actions}")
        episodes = np.asarray(episodes, dtype=np.int64).reshape(-1)
        if len(episodes) and (episodes.min() < 0 or episodes.max() >= arrays.n_episodes):
            raise ValueError(f"episode ids must lie in [0, {arrays.n_episodes})")
        self.arrays, self.n_actions, self.with_views = arrays, n_actions, with_views
        self.episodes = episodes
        counts = np.maximum(arrays.lengths[episodes] - n_actions + 1, 0)
        if counts.sum() == 0:
            raise DatasetError(
                f"episodes shorter than the window: none of the {len(episodes)} episodes has "
                f"{n_actions} actions (longest: {arrays.lengths[episodes].max(initial=0)}); "
                "use a shorter window or longer demonstrations"
            )
        # One row per valid window: its episode and global offsets of its first action / state.
        self._episode = np.repeat(episodes, counts)
        first = np.cumsum(counts) - counts  # where each episode's windows begin in the flat list
        t = np.arange(counts.sum()) - np.repeat(first, counts)
        self._action_start = arrays.action_start[self._episode] + t
        self._state_start = arrays.state_start[self._episode] + t
        self._state_steps = np.arange(n_actions + 1)
        self._action_steps = np.arange(n_actions)
        self._raster: MultiLayoutRaster | None = None
        if with_views:
            if arrays.walls is None:
                raise DatasetError(
                    "views need the maze layout of every episode (episode option 'walls'), "
                    "which this dataset does not store"
                )
            threads = view_threads or min(8, torch.get_num_threads())
            self._raster = MultiLayoutRaster(
                arrays.walls, arrays.goals, view_size, view_cells, threads=threads
            )

    @property
    def n_windows(self) -> int:
        """Number of valid windows (the flat start indices are ``0 .. n_windows - 1``)."""
        return len(self._episode)

    def window_episodes(self, starts: np.ndarray) -> np.ndarray:
        """The episode of each window ``starts`` (flat start indices)."""
        return self._episode[np.asarray(starts, dtype=np.int64)]

    def window_steps(self, starts: np.ndarray) -> np.ndarray:
        """The step ``t`` (within its episode) at which each window ``starts`` begins."""
        starts = np.asarray(starts, dtype=np.int64)
        return self._action_start[starts] - self.arrays.action_start[self._episode[starts]]

    def windows(self, starts: np.ndarray) -> Batch:
        """The windows with flat start indices ``starts`` (B,).

        Returns "states" float32 (B, n+1, ds), "actions" float32 (B, n, da) and, with views,
        "views" uint8 (B, n+1, 3, size, size).
        """
        starts = np.asarray(starts, dtype=np.int64).reshape(-1)
        state_rows = self._state_start[starts, None] + self._state_steps
        states = self.arrays.states[state_rows]
        actions = self.arrays.actions[self._action_start[starts, None] + self._action_steps]
        batch = {"states": torch.from_numpy(states), "actions": torch.from_numpy(actions)}
        if self._raster is not None:
            layouts = np.repeat(self._episode[starts], self.n_actions + 1)
            centres = self.arrays.view_centres[state_rows].reshape(-1, 2)
            views = self._raster(layouts, centres, states[..., :2].reshape(-1, 2))
            batch["views"] = torch.from_numpy(views.reshape(*state_rows.shape, *views.shape[1:]))
        return batch

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """``batch_size`` windows drawn uniformly (with replacement) over all valid starts."""
        return self.windows(rng.integers(self.n_windows, size=batch_size))


class _Endless(IterableDataset):
    """Endless sampler batches; iteration ``k`` (an epoch) draws from ``default_rng([seed, k])``.

    Each epoch gets a fresh but reproducible stream, independent of how many batches earlier
    epochs consumed.
    """

    def __init__(self, sampler: WindowSampler, batch_size: int, seed: int) -> None:
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed
        self._iterations = 0

    def __iter__(self) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, self._iterations])
        self._iterations += 1
        while True:
            yield self.sampler.sample(self.batch_size, rng)


class _Batches(Dataset):
    """A fixed list of batches, served as they are (``DataLoader(batch_size=None)``)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Batch:
        return self.batches[index]


class WindowDataModule(L.LightningDataModule):
    """Train / validation windows of a local Minari dataset, split by episode.

    Args:
        data_dir: the Minari root folder (``MINARI_DATASETS_PATH``).
        dataset_id: the dataset, e.g. ``skillcritic/maze-demos-v0``.
        n_actions: actions per window (``n_actions + 1`` states).
        batch_size: windows per batch.
        val_data_size: validation windows, drawn once and reused every epoch.
        val_fraction: fraction of the episodes held out for validation.
        seed: seeds the split, the training stream and the validation draw.
        with_views: add the agent-centric raster views (maze datasets).
        view_size, view_cells: pixels and cells per side of a view.
        normalize_states: compute per-dimension state mean / std on the train split
            (``state_stats``); batches are not normalised here.
        make_hint: the command that creates the dataset, named when it is missing.
    """

    def __init__(
        self,
        data_dir: str | Path,
        dataset_id: str,
        n_actions: int,
        batch_size: int = 128,
        val_data_size: int = 160,
        val_fraction: float = 0.1,
        seed: int = 0,
        with_views: bool = False,
        normalize_states: bool = False,
        make_hint: str = "skillcritic-data env=<env>",
        view_size: int = 32,
        view_cells: float = 4.0,
    ) -> None:
        super().__init__()
        if n_actions < 1:
            raise ValueError(f"n_actions must be >= 1, got {n_actions}")
        if batch_size < 1 or val_data_size < 1:
            raise ValueError(
                f"batch_size and val_data_size must be >= 1, got {batch_size}, {val_data_size}"
            )
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        self.data_dir, self.dataset_id, self.make_hint = Path(data_dir), dataset_id, make_hint
        self.n_actions, self.batch_size, self.val_data_size = n_actions, batch_size, val_data_size
        self.val_fraction, self.seed = val_fraction, seed
        self.with_views, self.view_size, self.view_cells = with_views, view_size, view_cells
        self.normalize_states = normalize_states
        self.arrays: EpisodeArrays | None = None
        self.episodes_train = np.zeros(0, dtype=np.int64)
        self.episodes_val = np.zeros(0, dtype=np.int64)
        self.train_sampler: WindowSampler | None = None
        self.val_sampler: WindowSampler | None = None
        self.state_stats: tuple[np.ndarray, np.ndarray] | None = None
        self._train_stream: _Endless | None = None
        self._val_batches: list[Batch] | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load the dataset, split it by episode and build the samplers (once)."""
        if self.arrays is not None:
            return
        dataset = load_dataset(self.data_dir, self.dataset_id, self.make_hint)
        arrays = EpisodeArrays.from_minari(dataset)
        n_episodes = arrays.n_episodes
        if n_episodes < 2:
            raise DatasetError(
                f"dataset {self.dataset_id} has {n_episodes} episode; a train / validation "
                "split by episode needs at least 2"
            )
        order = np.random.default_rng(self.seed).permutation(n_episodes)
        n_val = min(max(round(n_episodes * self.val_fraction), 1), n_episodes - 1)
        self.episodes_val, self.episodes_train = np.sort(order[:n_val]), np.sort(order[n_val:])
        self.train_sampler = self._sampler(arrays, self.episodes_train, "training")
        self.val_sampler = self._sampler(arrays, self.episodes_val, "validation")
        if self.normalize_states:
            rows = np.isin(arrays.episode_of_states(), self.episodes_train)
            self.state_stats = normalisation_statistics(arrays.states[rows])
        self.arrays = arrays

    def _sampler(self, arrays: EpisodeArrays, episodes: np.ndarray, split: str) -> WindowSampler:
        try:
            return WindowSampler(
                arrays, episodes, self.n_actions, self.with_views, self.view_size, self.view_cells
            )
        except DatasetError as error:
            raise DatasetError(f"dataset {self.dataset_id}, {split} split: {error}") from error

    def _require_setup(self) -> EpisodeArrays:
        if self.arrays is None:
            raise RuntimeError("WindowDataModule.setup() has not run yet")
        return self.arrays

    @property
    def state_dim(self) -> int:
        """Size of a state vector."""
        return self._require_setup().state_dim

    @property
    def action_dim(self) -> int:
        """Size of an action vector."""
        return self._require_setup().action_dim

    def train_dataloader(self) -> DataLoader:
        """Endless training batches (set the trainer's ``limit_train_batches`` for epochs)."""
        self._require_setup()
        assert self.train_sampler is not None
        if self._train_stream is None:
            # Under DDP every process draws its own stream (rank 0 keeps the plain seed's).
            rank = self.trainer.global_rank if self.trainer is not None else 0
            seed = self.seed if rank == 0 else hash((self.seed, rank)) % 2**31
            self._train_stream = _Endless(self.train_sampler, self.batch_size, seed)
        return DataLoader(self._train_stream, batch_size=None, num_workers=0)

    def val_batches(self) -> list[Batch]:
        """The fixed validation batches: ``val_data_size`` windows drawn once, in batches of
        ``batch_size`` (the last may be smaller); without replacement where possible."""
        self._require_setup()
        assert self.val_sampler is not None
        if self._val_batches is None:
            rng = np.random.default_rng([self.seed, 1 << 20])
            n_windows = self.val_sampler.n_windows
            replace = self.val_data_size > n_windows
            starts = rng.choice(n_windows, size=self.val_data_size, replace=replace)
            self._val_batches = [
                self.val_sampler.windows(starts[i : i + self.batch_size])
                for i in range(0, len(starts), self.batch_size)
            ]
        return self._val_batches

    def val_dataloader(self) -> DataLoader:
        """The same validation batches every epoch."""
        return DataLoader(_Batches(self.val_batches()), batch_size=None, shuffle=False)
