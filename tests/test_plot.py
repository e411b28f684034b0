"""skillcritic-plot on real TensorBoard event files, in run folders shaped like real runs."""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from torch.utils.tensorboard import SummaryWriter

from conftest import BIN
from skillcritic.errors import UserError
from skillcritic.viz.plots import (
    CSV_COLUMNS,
    Curve,
    Run,
    Series,
    aggregate,
    block_success,
    find_runs,
    group_runs,
    learning_curves,
    parse_reference,
    plot_runs,
    read_run,
    read_runs,
    smooth,
)

Points = dict[str, list[tuple[int, float]]]

# rollout/* of runs/<agent>/seed<k>; sac seed2 is still in progress (shorter, half a record last)
RUNS: dict[tuple[str, int], Points] = {
    ("sac", 0): {
        "rollout/success": [(100, 0.0), (200, 0.5), (300, 1.0), (400, 1.0)],
        "rollout/return": [(100, 1.0), (200, 2.0), (300, 3.0), (400, 4.0)],
        "train/return": [(10, 0.0), (20, 0.0), (30, 3.0), (40, 3.0), (50, 6.0)],
    },
    ("sac", 1): {
        "rollout/success": [(100, 0.0), (200, 0.25), (300, 0.5), (400, 0.75)],
        "rollout/return": [(100, 3.0), (200, 4.0), (300, 5.0), (400, 6.0)],
    },
    ("sac", 2): {
        "rollout/success": [(100, 0.5), (200, 0.75)],
        "rollout/return": [(100, 5.0), (200, 6.0)],
    },
    ("skill_critic", 0): {
        "rollout/success": [(100, 0.0), (300, 1.0)],
        "rollout/return": [(100, 10.0), (300, 30.0)],
    },
    ("skill_critic", 1): {
        "rollout/success": [(200, 0.0), (300, 0.0)],
        "rollout/return": [(200, 40.0), (300, 50.0)],
    },
}


def write_events(folder: Path, points: Points) -> None:
    """One event file in ``folder``, as one process of a run writes it."""
    writer = SummaryWriter(str(folder))
    for tag, pairs in points.items():
        for step, value in pairs:
            writer.add_scalar(tag, value, step)
    writer.close()


@pytest.fixture(scope="module")
def maze(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``outputs/rl/maze`` with sac seeds 0-2 and skill_critic seeds 0-1 (prefix ``default``)."""
    maze = tmp_path_factory.mktemp("plots") / "outputs/rl/maze"
    for (agent, seed), points in RUNS.items():
        write_events(maze / agent / "default" / f"seed{seed}" / "tensorboard", points)
    (in_progress,) = (maze / "sac/default/seed2/tensorboard").glob("events.out.tfevents.*")
    with in_progress.open("ab") as file:
        file.write(in_progress.read_bytes()[:7])  # the first bytes of a record not yet flushed
    return maze


def curve(curves: list[Curve], label: str, metric: str) -> Curve:
    (found,) = [c for c in curves if c.label == label and c.metric == metric]
    return found


def test_runs_are_found_named_and_grouped_by_agent(maze: Path) -> None:
    runs = find_runs([maze])
    assert [(run.env, run.agent, run.prefix, run.seed) for run in runs] == [
        ("maze", agent, "default", f"seed{seed}") for agent, seed in RUNS
    ]
    groups = group_runs(runs)
    assert {label: [run.seed for run in members] for label, members in groups.items()} == {
        "sac": ["seed0", "seed1", "seed2"],
        "skill_critic": ["seed0", "seed1"],
    }
    # a prefix folder and a run's own tensorboard folder find the same runs
    assert find_runs(sorted(maze.glob("*/default"))) == runs
    assert find_runs([maze / "sac/default/seed1/tensorboard"]) == [runs[1]]


def test_labels_name_env_and_prefix_only_where_runs_differ() -> None:
    def run(env: str, agent: str, prefix: str) -> Run:
        return Run(Path(f"/o/rl/{env}/{agent}/{prefix}/seed0"), env, agent, prefix, "seed0", ())

    two_envs = [run("maze", "sac", "a"), run("maze_nav", "sac", "a")]
    assert list(group_runs(two_envs)) == ["maze/sac", "maze_nav/sac"]
    two_prefixes = [run("maze", "sac", "a"), run("maze", "sac", "b"), run("maze", "spirl", "a")]
    assert list(group_runs(two_prefixes)) == ["sac/a", "sac/b", "spirl/a"]


def test_a_run_in_progress_reads_up_to_its_last_complete_record(maze: Path) -> None:
    (run,) = find_runs([maze / "sac/default/seed2"])
    series = read_run(run, ["rollout/success", "rollout/return", "train/return"])
    assert set(series) == {"rollout/success", "rollout/return"}  # what it has
    assert series["rollout/success"].steps.tolist() == [100, 200]
    assert series["rollout/return"].values.tolist() == [5.0, 6.0]


def test_mean_spread_and_seed_count_per_step(maze: Path) -> None:
    series = read_runs(find_runs([maze]), "rollout")
    curves = learning_curves(series, window=1)
    success = curve(curves, "sac", "success")
    assert success.steps.tolist() == [100, 200, 300, 400]
    assert success.n_seeds.tolist() == [3, 3, 2, 2]  # seed2 stopped at 200: not extrapolated
    assert success.mean == pytest.approx([1 / 6, 0.5, 0.75, 0.875])
    std_200 = math.sqrt((0.0 + 0.25**2 + 0.25**2) / 3)  # of 0.5, 0.25, 0.75
    assert success.low[1:3] == pytest.approx([0.5 - std_200, 0.5])
    assert success.high[1:3] == pytest.approx([0.5 + std_200, 1.0])
    returns = curve(curves, "sac", "return")
    assert returns.mean[1] == pytest.approx(4.0)
    assert returns.high[1] - returns.mean[1] == pytest.approx(math.sqrt(8 / 3))
    # skill_critic's seeds log at other steps: each is interpolated inside its own range only
    returns = curve(curves, "skill_critic", "return")
    assert returns.steps.tolist() == [100, 200, 300]
    assert returns.n_seeds.tolist() == [1, 2, 2]  # seed1 starts at 200
    assert returns.mean == pytest.approx([10.0, 30.0, 40.0])  # seed0 at 200: 20
    assert returns.low == pytest.approx([10.0, 20.0, 30.0])
    minmax = curve(learning_curves(series, window=1, spread="minmax"), "sac", "success")
    assert minmax.low[1] == 0.25 and minmax.high[1] == 0.75
    assert minmax.mean == pytest.approx(success.mean)


def test_smoothing_is_a_trailing_mean_over_window_points(maze: Path) -> None:
    values = np.array([0.0, 0.0, 3.0, 3.0, 6.0])
    assert smooth(values, 1).tolist() == values.tolist()
    assert smooth(values, 3).tolist() == [0.0, 0.0, 1.0, 2.0, 4.0]
    assert smooth(values, 10).tolist() == [0.0, 0.0, 1.0, 1.5, 2.4]
    # each seed is smoothed on its own points before the seeds are averaged
    seeds = [
        Series(np.array([0, 10, 20]), np.array([0.0, 2.0, 4.0])),
        Series(np.array([0, 20]), np.array([4.0, 0.0])),
    ]
    smoothed = aggregate("a", "return", seeds, window=2)
    assert smoothed.mean.tolist() == pytest.approx([2.0, (1.0 + 3.0) / 2, (3.0 + 2.0) / 2])
    # on the files: sac seed0 is the only run with train/return
    (train,) = learning_curves(read_runs(find_runs([maze]), "train"), window=3)
    assert (train.label, train.metric) == ("sac", "return")
    assert train.mean.tolist() == [0.0, 0.0, 1.0, 2.0, 4.0]


def test_a_resumed_run_merges_its_event_files_later_first(tmp_path: Path) -> None:
    folder = tmp_path / "rl/maze/sac/default/seed0/tensorboard"
    write_events(
        folder, {"train/return": [(0, 1.0), (100, 1.0), (200, 1.0), (300, 1.0), (350, 1.0)]}
    )
    write_events(folder, {"train/return": [(300, 2.0), (400, 2.0), (500, 2.0)]})  # resumed at 300
    (run,) = find_runs([tmp_path])
    assert len(run.event_files) == 2
    merged = read_run(run, ["train/return"])["train/return"]
    assert merged.steps.tolist() == [0, 100, 200, 300, 400, 500]  # 350: dropped with the kill
    assert merged.values.tolist() == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]


def test_png_and_csv_hold_the_plotted_values(maze: Path, tmp_path: Path) -> None:
    png, table = plot_runs([maze], tmp_path / "figures/curves.png", spread="minmax")
    assert (png, table) == (tmp_path / "figures/curves.png", tmp_path / "figures/curves.csv")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in png.parent.iterdir()) == ["curves.csv", "curves.png"]  # no temp
    with table.open(newline="") as file:
        rows = list(csv.reader(file))
    assert tuple(rows[0]) == CSV_COLUMNS
    curves = learning_curves(read_runs(find_runs([maze]), "rollout"), 1, "minmax")
    expected = [
        [c.label, c.metric, str(step), str(mean), str(low), str(high), str(n)]
        for c in curves
        for step, mean, low, high, n in zip(c.steps, c.mean, c.low, c.high, c.n_seeds, strict=True)
    ]
    assert rows[1:] == expected
    assert ["sac", "success", "300", "0.75", "0.5", "1.0", "2"] in rows
    assert ["skill_critic", "return", "100", "10.0", "10.0", "10.0", "1"] in rows


def test_a_sweep_folder_leads_to_its_jobs_run_folders(maze: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "outputs/multirun/rl/2026-01-01_00-00-00_1"
    started_in = maze.parents[2]  # the folder holding outputs/
    for job, (agent, seed) in enumerate([("sac", 0), ("skill_critic", 1)]):
        config = {
            "paths": {"outputs": "outputs"},
            "stage": "rl",
            "env": {"name": "maze"},
            "agent": {"name": agent},
            "variant": "${agent.name}",
            "prefix": "default",
            "seed": seed,
            "run_dir": "${paths.outputs}/${stage}/${env.name}/${variant}/${prefix}/seed${seed}",
        }
        (sweep / str(job) / ".hydra").mkdir(parents=True)
        (sweep / str(job) / ".hydra/config.yaml").write_text(yaml.safe_dump(config))
        hydra = {"hydra": {"runtime": {"cwd": str(started_in)}}}
        (sweep / str(job) / ".hydra/hydra.yaml").write_text(yaml.safe_dump(hydra))
    (sweep / "multirun.yaml").write_text("{}\n")
    runs = find_runs([sweep])
    assert [(run.agent, run.seed) for run in runs] == [("sac", "seed0"), ("skill_critic", "seed1")]


def plot(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    command = [str(BIN / "skillcritic-plot"), *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_writes_beside_the_first_path_and_prints_both_paths(maze: Path) -> None:
    done = plot(maze, "--source", "train", "--window", "2", "--title", "T", cwd=maze)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(maze / "plot_train.png"), str(maze / "plot_train.csv")]
    with (maze / "plot_train.csv").open(newline="") as file:
        means = [float(row["mean"]) for row in csv.DictReader(file)]
    assert means == [0.0, 0.0, 1.5, 3.0, 4.5]


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing"], "missing is not a folder"),
        (["empty"], "no TensorBoard event files under empty"),
        (["runs", "--window", "0"], "window must be at least 1"),
        (["runs", "--out", "curves.svg"], "must name a .png file"),
        (["runs"], "has logged rollout/success or rollout/return yet"),
        (["runs", "--reference", "fast"], "--reference takes VALUE=LABEL, got 'fast'"),
        (["runs", "--success-block", "0"], "--success-block takes a positive number"),
    ],
)
def test_cli_bad_input_is_one_error_line(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_events(tmp_path / "runs/rl/maze/sac/default/seed0/tensorboard", {"hl/alpha": [(5, 1.0)]})
    done = plot(*args, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: ")
    assert message in done.stderr


def test_any_logged_scalars_plot_with_tags(maze: Path, tmp_path: Path) -> None:
    # sac seed0's train/return stands in for a diagnostic such as hl/alpha
    png, table = plot_runs([maze], tmp_path / "d.png", window=1, tags=["train/return"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with table.open(newline="") as file:
        rows = list(csv.reader(file))[1:]
    assert {row[1] for row in rows} == {"train/return"}
    assert [float(row[3]) for row in rows] == [0.0, 0.0, 3.0, 3.0, 6.0]
    with pytest.raises(UserError, match="hl/alpha"):
        plot_runs([maze], tmp_path / "e.png", tags=["hl/alpha"])


def test_reference_lines_are_drawn_and_labelled(maze: Path, tmp_path: Path) -> None:
    assert parse_reference("297=AI at 0.7") == (297.0, "AI at 0.7")
    assert parse_reference("0.5") == (0.5, "0.5")  # the value labels an unnamed line
    plain, plain_csv = plot_runs([maze], tmp_path / "plain.png")
    lined, lined_csv = plot_runs([maze], tmp_path / "lined.png", references=["5=bar"])
    assert lined.read_bytes() != plain.read_bytes()
    assert lined_csv.read_text() == plain_csv.read_text()  # the CSV holds the runs only


def test_block_success_is_one_where_any_episode_in_the_block_succeeded() -> None:
    # blocks (0, 100], (100, 200], (200, 300]: a success in the first and the last (in progress)
    logged = Series(np.array([10, 50, 100, 110, 190, 230]), np.array([0, 0.5, 0, 0, 0, 0.25]))
    blocks = block_success(logged, 100)
    assert blocks.steps.tolist() == [100, 190, 230]  # each block's last logged step
    assert blocks.values.tolist() == [1.0, 0.0, 1.0]


def test_success_block_plots_success_per_block(tmp_path: Path) -> None:
    successes = [(step, 0.0) for step in range(25, 401, 25)]
    successes[5] = (150, 0.5)  # seed 0: one success in (100, 200]
    write_events(tmp_path / "rl/maze/spirl/default/seed0/tb", {"train/success": successes})
    write_events(tmp_path / "rl/maze/spirl/default/seed1/tb", {"train/success": successes[:8]})
    _, table = plot_runs([tmp_path / "rl"], tmp_path / "b.png", "train", success_block=100)
    with table.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["metric"] == "success"]
    # both seeds share the blocks that end at 100 and 200; seed 1 has logged no further
    assert [(int(r["env_steps"]), float(r["mean"]), int(r["n_seeds"])) for r in rows] == [
        (100, 0.0, 2),
        (200, 1.0, 2),
        (300, 0.0, 1),
        (400, 0.0, 1),
    ]
