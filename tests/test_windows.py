"""Window datasets: exact alignment, uniform starts, views, episode splits, validation batches."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from minari.data_collector import EpisodeBuffer

from skillcritic.data.collect import collect_dataset
from skillcritic.data.minari_io import DatasetError, load_dataset, write_dataset
from skillcritic.data.windows import EpisodeArrays, WindowDataModule, WindowSampler
from skillcritic.envs.maze.demos import DemoConfig, MazeDemoGenerator, generate_demo
from skillcritic.envs.maze.layout import random_t_maze
from skillcritic.envs.maze.view import AGENT, MultiLayoutRaster, ViewRaster

CONFIG = DemoConfig(layout_size=8, min_steps=10)
STATE = gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)
ACTION = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
MAZE = "skillcritic/test-maze-v0"
HAND = "skillcritic/test-hand-v0"


def write_hand_made(
    data_dir: Path,
    lengths: Sequence[int],
    state_dim: int = 3,
    action_dim: int = 2,
    options: Sequence[dict] | None = None,
    poison: tuple[int, int] | None = None,
    observation_space: gymnasium.spaces.Space | None = None,
) -> None:
    """Episode e has T_e = lengths[e] actions; state rows and action rows hold a running
    counter (the same counter for state t and action t of an episode, 1000 * e + t) so every
    value says where it came from. ``poison`` = (episode, step) puts a NaN in that state."""
    buffers = []
    for e, length in enumerate(lengths):
        code = 1000.0 * e + np.arange(length + 1, dtype=np.float32)
        states = np.repeat(code[:, None], state_dim, axis=1)
        states[:, 1:] += np.arange(1, state_dim) * 0.25
        actions = np.repeat(code[:-1, None], action_dim, axis=1) + 0.5
        if poison is not None and poison[0] == e:
            states[poison[1], 0] = np.nan
        terminations = np.zeros(length, dtype=bool)
        terminations[-1] = True
        buffers.append(
            EpisodeBuffer(
                id=e,
                options=None if options is None else options[e],
                observations=states,
                actions=actions,
                rewards=np.zeros(length, dtype=np.float32),
                terminations=terminations,
                truncations=np.zeros(length, dtype=bool),
            )
        )
    state_space = observation_space or gymnasium.spaces.Box(
        -np.inf, np.inf, (state_dim,), np.float32
    )
    action_space = gymnasium.spaces.Box(-np.inf, np.inf, (action_dim,), np.float32)
    write_dataset(data_dir, HAND, buffers, state_space, action_space, "hand made")


def hand_arrays(data_dir: Path, lengths: Sequence[int], **kwargs) -> EpisodeArrays:
    write_hand_made(data_dir, lengths, **kwargs)
    return EpisodeArrays.from_minari(load_dataset(data_dir, HAND, "make it"))


@pytest.fixture(scope="module")
def maze_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("maze")
    collect_dataset(MazeDemoGenerator(0, CONFIG), 6, 1, data_dir, MAZE, STATE, ACTION, "test")
    return data_dir


# --------------------------------------------------------------------------------------------
# MultiLayoutRaster
# --------------------------------------------------------------------------------------------


def test_multi_layout_raster_equals_view_raster_per_layout() -> None:
    rng = np.random.default_rng(0)
    walls = [random_t_maze(n, rng) for n in (5, 8, 12)] + [np.zeros((3, 9), dtype=bool)]
    goals = np.array([[2.0, 3.0], [4.0, 4.0], [6.5, 2.0], [np.nan, np.nan]])
    n = 600
    layout = rng.integers(0, len(walls), n)
    sizes = np.array([w.shape for w in walls], dtype=np.float64)
    # Inside, on the border, and well outside each layout; some right next to the goal.
    positions = rng.uniform(-3.0, sizes[layout] + 2.0)
    near = rng.random(n) < 0.3
    jitter = rng.uniform(-2.6, 2.6, (near.sum(), 2))
    positions[near] = np.nan_to_num(goals[layout[near]], nan=1.0) + jitter
    agents = positions + rng.uniform(-0.5, 0.5, positions.shape)  # the views trail the agent
    for threads, block in ((1, 256), (3, 64)):
        raster = MultiLayoutRaster(walls, goals, size=16, view_cells=3.5, threads=threads)
        raster.block = block
        views = raster(layout, positions, agents)
        assert views.shape == (n, 3, 16, 16) and views.dtype == np.uint8
        for e, layout_walls in enumerate(walls):
            goal = None if np.isnan(goals[e]).any() else goals[e]
            expected = ViewRaster(layout_walls, goal, size=16, view_cells=3.5)(
                positions[layout == e], agents[layout == e]
            )
            np.testing.assert_array_equal(views[layout == e], expected)
        raster.close()
    assert views[:, 1].any() and views[:, 0].any() and not views[layout == 3, 1].any()
    assert views[:, AGENT].any()
    copy = pickle.loads(pickle.dumps(raster))
    np.testing.assert_array_equal(copy(layout, positions, agents), views)


def test_multi_layout_raster_without_goals_and_empty() -> None:
    walls = [np.eye(6, dtype=np.uint8), np.ones((4, 7), dtype=bool)]
    raster = MultiLayoutRaster(walls)
    positions = np.array([[2.0, 2.0], [1.5, 3.0]])
    views = raster(np.array([0, 1]), positions)
    np.testing.assert_array_equal(views[0], ViewRaster(walls[0])(positions[:1])[0])
    np.testing.assert_array_equal(views[1], ViewRaster(walls[1])(positions[1:])[0])
    assert raster(np.zeros(0, int), np.zeros((0, 2))).shape == (0, 3, 32, 32)
    with pytest.raises(IndexError):
        raster(np.array([2]), positions[:1])


# --------------------------------------------------------------------------------------------
# EpisodeArrays
# --------------------------------------------------------------------------------------------


def test_episode_arrays_round_trip_maze(maze_dir: Path) -> None:
    arrays = EpisodeArrays.from_minari(load_dataset(maze_dir, MAZE, "make it"))
    assert arrays.n_episodes == 6 and arrays.state_dim == 4 and arrays.action_dim == 2
    assert arrays.states.dtype == arrays.actions.dtype == np.float32
    assert arrays.states.flags.c_contiguous and arrays.actions.flags.c_contiguous
    assert arrays.walls is not None and arrays.goals is not None
    for e in range(6):
        demo = generate_demo(0, e, CONFIG).demo
        t, s, a = arrays.lengths[e], arrays.state_start[e], arrays.action_start[e]
        assert t == len(demo.actions)
        np.testing.assert_array_equal(arrays.states[s : s + t + 1], demo.states)
        np.testing.assert_array_equal(arrays.actions[a : a + t], demo.actions)
        np.testing.assert_array_equal(arrays.walls[e], demo.options["walls"])
        np.testing.assert_array_equal(arrays.goals[e], demo.options["goal"])
    assert len(arrays.states) == arrays.lengths.sum() + 6


def test_hand_made_offsets_and_no_maze_extras(tmp_path: Path) -> None:
    arrays = hand_arrays(tmp_path, [3, 1, 5])
    np.testing.assert_array_equal(arrays.lengths, [3, 1, 5])
    np.testing.assert_array_equal(arrays.state_start, [0, 4, 6])
    np.testing.assert_array_equal(arrays.action_start, [0, 3, 4])
    assert arrays.walls is None and arrays.goals is None
    np.testing.assert_array_equal(arrays.states[6:, 0], 2000 + np.arange(6))


def test_nan_names_the_episode(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="episode 2: observations contain NaN"):
        hand_arrays(tmp_path, [4, 4, 4, 4], poison=(2, 3))


def test_non_flat_observations_are_refused(tmp_path: Path) -> None:
    space = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    write_hand_made(tmp_path, [4, 4], observation_space=space)  # fine
    image = gymnasium.spaces.Box(0, 255, (2, 2, 3), np.uint8)
    buffer = EpisodeBuffer(
        id=0,
        observations=np.zeros((3, 2, 2, 3), dtype=np.uint8),
        actions=np.zeros((2, 2), dtype=np.float32),
        rewards=np.zeros(2, dtype=np.float32),
        terminations=np.array([False, True]),
        truncations=np.zeros(2, dtype=bool),
    )
    write_dataset(tmp_path / "img", HAND, [buffer], image, ACTION, "images")
    with pytest.raises(DatasetError, match="flat Box"):
        EpisodeArrays.from_minari(load_dataset(tmp_path / "img", HAND, "make it"))


# --------------------------------------------------------------------------------------------
# WindowSampler
# --------------------------------------------------------------------------------------------


def all_valid_windows(lengths: Sequence[int], n: int, episodes: Sequence[int]) -> set:
    return {(e, t) for e in episodes for t in range(lengths[e] - n + 1)}


def test_windows_are_aligned_and_stay_inside_episodes(tmp_path: Path) -> None:
    lengths = [7, 2, 4, 12, 3]
    arrays = hand_arrays(tmp_path, lengths)
    n = 3
    sampler = WindowSampler(arrays, np.arange(5), n)
    assert sampler.n_windows == len(all_valid_windows(lengths, n, range(5))) == 5 + 2 + 10 + 1
    batch = sampler.windows(np.arange(sampler.n_windows))
    states, actions = batch["states"].numpy(), batch["actions"].numpy()
    assert states.shape == (sampler.n_windows, n + 1, 3) and actions.shape == (
        sampler.n_windows,
        n,
        2,
    )
    assert batch["states"].dtype == batch["actions"].dtype == torch.float32
    episode, t = np.divmod(states[:, 0, 0].astype(int), 1000)
    np.testing.assert_array_equal(episode, sampler.window_episodes(np.arange(sampler.n_windows)))
    np.testing.assert_array_equal(t, sampler.window_steps(np.arange(sampler.n_windows)))
    # state t..t+n and action t..t+n-1 of one episode: consecutive codes, same episode.
    np.testing.assert_array_equal(states[:, :, 0], states[:, :1, 0] + np.arange(n + 1))
    np.testing.assert_array_equal(actions[:, :, 0], states[:, :-1, 0] + 0.5)
    np.testing.assert_array_equal(states[:, :, 2], states[:, :, 0] + 0.5)
    assert set(zip(episode, t, strict=True)) == all_valid_windows(lengths, n, range(5))
    assert 1 not in episode and (t + n <= np.array(lengths)[episode]).all()


def test_starts_are_uniform_over_all_valid_windows(tmp_path: Path) -> None:
    lengths = [6, 3, 9]
    arrays = hand_arrays(tmp_path, lengths)
    sampler = WindowSampler(arrays, np.array([0, 1, 2]), 3)
    rng = np.random.default_rng(0)
    codes = np.concatenate(
        [sampler.sample(256, rng)["states"][:, 0, 0].numpy() for _ in range(200)]
    ).astype(int)
    counts = dict(zip(*np.unique(codes, return_counts=True), strict=True))
    expected = {1000 * e + t for e, t in all_valid_windows(lengths, 3, range(3))}
    assert set(counts) == expected
    mean = len(codes) / len(expected)  # 51200 / 12; binomial sd ~ 62
    assert all(abs(c - mean) < 5 * np.sqrt(mean) for c in counts.values())


def test_sampler_uses_only_its_episodes(tmp_path: Path) -> None:
    arrays = hand_arrays(tmp_path, [5, 5, 5, 5])
    sampler = WindowSampler(arrays, np.array([1, 3]), 2)
    codes = sampler.sample(500, np.random.default_rng(1))["states"][:, 0, 0].numpy()
    assert set(np.unique(codes // 1000).astype(int)) == {1, 3}


def test_too_short_episodes(tmp_path: Path) -> None:
    arrays = hand_arrays(tmp_path, [2, 3, 8])
    assert WindowSampler(arrays, np.array([0, 2]), 3).n_windows == 6
    with pytest.raises(DatasetError, match="episodes shorter than the window"):
        WindowSampler(arrays, np.array([0, 1]), 4)
    assert WindowSampler(arrays, np.array([1]), 3).n_windows == 1  # exactly one window


def test_views_need_layouts(tmp_path: Path) -> None:
    arrays = hand_arrays(tmp_path, [5])
    with pytest.raises(DatasetError, match="walls"):
        WindowSampler(arrays, np.array([0]), 2, with_views=True)


def test_views_equal_the_episode_raster(maze_dir: Path) -> None:
    arrays = EpisodeArrays.from_minari(load_dataset(maze_dir, MAZE, "make it"))
    assert arrays.walls is not None and arrays.goals is not None
    sampler = WindowSampler(arrays, np.arange(6), 5, with_views=True, view_size=16)
    starts = np.random.default_rng(0).integers(sampler.n_windows, size=40)
    batch = sampler.windows(starts)
    views = batch["views"]
    assert views.shape == (40, 6, 3, 16, 16) and views.dtype == torch.uint8
    steps = sampler.window_steps(starts)
    for i, e in enumerate(sampler.window_episodes(starts)):
        # the view centres trail the agent from the episode's start, as the env's camera does
        first, length = arrays.state_start[e], arrays.lengths[e] + 1
        positions = arrays.states[first : first + length, :2].astype(np.float64)
        centres = [positions[0]]
        for position in positions[1:]:
            centres.append(centres[-1] + 0.2 * (position - centres[-1]))
        window = slice(steps[i], steps[i] + 6)
        raster = ViewRaster(arrays.walls[e], arrays.goals[e], size=16)
        expected = raster(np.array(centres)[window], positions[window])
        assert np.allclose(batch["states"][i, :, :2].numpy(), positions[window])
        np.testing.assert_array_equal(views[i].numpy(), expected)
    # The last states of demos reach the goal: some views show the marker.
    last = sampler.windows(np.array([sampler.n_windows - 1]))
    assert last["views"][0, -1, 1].any()


# --------------------------------------------------------------------------------------------
# WindowDataModule
# --------------------------------------------------------------------------------------------


def module(data_dir: Path, dataset_id: str = HAND, **kwargs) -> WindowDataModule:
    args = {"n_actions": 2, "batch_size": 8, "val_data_size": 20, "val_fraction": 0.25} | kwargs
    dm = WindowDataModule(data_dir, dataset_id, **args)
    dm.setup("fit")
    return dm


def test_split_by_episode_is_deterministic_disjoint_complete(tmp_path: Path) -> None:
    write_hand_made(tmp_path, [4 + e for e in range(10)])
    dm = module(tmp_path, seed=3)
    train, val = dm.episodes_train, dm.episodes_val
    assert len(val) == 2 and len(train) == 8
    assert not set(train) & set(val) and set(train) | set(val) == set(range(10))
    again = module(tmp_path, seed=3)
    np.testing.assert_array_equal(again.episodes_val, val)
    others = [tuple(module(tmp_path, seed=s).episodes_val) for s in range(6)]
    assert len(set(others)) > 1
    assert dm.state_dim == 3 and dm.action_dim == 2 and dm.state_stats is None
    # Batches come from their own split only.
    train_codes = next(iter(dm.train_dataloader()))["states"][:, :, 0].numpy() // 1000
    assert set(np.unique(train_codes).astype(int)) <= set(train)
    val_codes = np.concatenate([b["states"][:, :, 0].numpy() for b in dm.val_dataloader()])
    assert set(np.unique(val_codes // 1000).astype(int)) <= set(val)


def test_two_episodes_give_one_each(tmp_path: Path) -> None:
    write_hand_made(tmp_path, [5, 5])
    dm = module(tmp_path, val_fraction=0.01)
    assert len(dm.episodes_train) == len(dm.episodes_val) == 1
    write_hand_made(tmp_path / "one", [5])
    with pytest.raises(DatasetError, match="at least 2"):
        module(tmp_path / "one")


def test_state_stats_come_from_the_train_split(tmp_path: Path) -> None:
    write_hand_made(tmp_path, [3, 5, 4, 6, 2, 7, 3, 5])
    dm = module(tmp_path, normalize_states=True, n_actions=1)
    assert dm.state_stats is not None and dm.arrays is not None
    mean, std = dm.state_stats
    rows = np.concatenate(
        [
            dm.arrays.states[dm.arrays.state_start[e] : dm.arrays.state_start[e] + t + 1]
            for e, t in zip(dm.episodes_train, dm.arrays.lengths[dm.episodes_train], strict=True)
        ]
    ).astype(np.float64)
    np.testing.assert_allclose(mean, rows.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, rows.std(axis=0), rtol=1e-6)
    assert not np.allclose(mean, dm.arrays.states.astype(np.float64).mean(axis=0))
    # Constant dimensions get the floor, not zero.
    write_hand_made(tmp_path / "flat", [3, 3, 3], state_dim=1)
    flat = module(tmp_path / "flat", normalize_states=True, n_actions=1)
    assert flat.state_stats is not None
    assert flat.state_stats[1].min() > 0


def test_train_stream_is_reproducible_and_endless(tmp_path: Path) -> None:
    write_hand_made(tmp_path, [6] * 8)

    def first_batches(dm: WindowDataModule, k: int) -> list[torch.Tensor]:
        iterator = iter(dm.train_dataloader())
        return [next(iterator)["states"] for _ in range(k)]

    a, b = module(tmp_path, seed=5), module(tmp_path, seed=5)
    for x, y in zip(first_batches(a, 50), first_batches(b, 50), strict=True):
        assert torch.equal(x, y) and x.shape == (8, 3, 3)
    # A second epoch (a new iterator) draws new windows.
    epoch_one, epoch_two = first_batches(a, 3), first_batches(a, 3)
    assert not all(torch.equal(x, y) for x, y in zip(epoch_one, epoch_two, strict=True))
    other = first_batches(module(tmp_path, seed=6), 3)
    assert not all(torch.equal(x, y) for x, y in zip(first_batches(b, 3), other, strict=True))


def test_val_batches_are_fixed(tmp_path: Path, maze_dir: Path) -> None:
    write_hand_made(tmp_path, [6] * 12)
    dm = module(tmp_path, val_data_size=20, batch_size=8)
    first, second = list(dm.val_dataloader()), list(dm.val_dataloader())
    assert [len(b["states"]) for b in first] == [8, 8, 4]
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x["states"], y["states"]) and torch.equal(x["actions"], y["actions"])
    again = list(module(tmp_path, val_data_size=20, batch_size=8).val_dataloader())
    assert all(torch.equal(x["states"], y["states"]) for x, y in zip(first, again, strict=True))
    maze = module(maze_dir, MAZE, with_views=True, val_data_size=5, view_size=8, n_actions=4)
    (batch,) = list(maze.val_dataloader())
    assert batch["views"].shape == (5, 5, 3, 8, 8) and batch["states"].shape == (5, 5, 4)


def test_missing_dataset_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="skillcritic-data env=maze"):
        module(tmp_path, make_hint="skillcritic-data env=maze")


def test_short_validation_episodes_name_the_split(tmp_path: Path) -> None:
    write_hand_made(tmp_path, [2, 2, 2, 2, 9, 9, 9, 9])
    with pytest.raises(DatasetError, match="split: episodes shorter than the window"):
        for seed in range(20):  # some seed puts only short episodes in validation
            module(tmp_path, n_actions=5, seed=seed, val_fraction=0.25)


def test_lightning_trainer_consumes_the_module(tmp_path: Path) -> None:
    import lightning as L

    write_hand_made(tmp_path, [6] * 8)

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)
            self.seen: dict[str, list[tuple]] = {"train": [], "val": []}

        def training_step(self, batch: dict, index: int) -> torch.Tensor:
            self.seen["train"].append(tuple(batch["states"].shape))
            return (self.layer(batch["states"][:, 0]) - batch["actions"][:, 0]).pow(2).mean()

        def validation_step(self, batch: dict, index: int) -> None:
            self.seen["val"].append(tuple(batch["states"].shape))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    probe = Probe()
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    dm = WindowDataModule(tmp_path, HAND, n_actions=2, batch_size=4, val_data_size=6)
    trainer.fit(probe, datamodule=dm)
    assert probe.seen["train"] == [(4, 3, 3)] * 6
    assert probe.seen["val"] == [(4, 3, 3), (2, 3, 3)] * 2


def test_normalisation_statistics_leave_constant_dimensions_unscaled() -> None:
    from skillcritic.data.windows import normalisation_statistics

    states = np.array([[1.0, 0.0, 5.0], [3.0, 0.0, 5.0], [5.0, 0.0, 5.0]])
    mean, std = normalisation_statistics(states)
    assert mean.dtype == std.dtype == np.float32
    assert mean.tolist() == [3.0, 0.0, 5.0]
    assert std.tolist() == pytest.approx([np.sqrt(8 / 3), 1.0, 1.0])  # constant: std 1
