"""Learning curves of RL runs: success and return vs env steps, mean and spread over seeds.

``skillcritic-plot PATH ...`` reads the TensorBoard event files of ``skillcritic-rl`` run folders
(``<outputs>/rl/<env>/<agent>/<prefix>/seed<k>/``), draws one line per agent into a PNG and
writes the plotted values as a CSV beside it. Runs still in progress are read up to their last
complete record.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from skillcritic.cli import USER_ERROR_EXIT
from skillcritic.errors import UserError

METRICS = {"success": "success rate", "return": "return"}  # metric -> y label
SOURCES = {"rollout": "evaluation episodes", "train": "training episodes"}
SPREADS = {"std": "mean ± std over seeds", "minmax": "mean and min–max over seeds"}
DEFAULT_WINDOW = {"rollout": 1, "train": 10}  # evaluations are sparse; training logs are not
REFERENCE_STYLES = ("--", ":", "-.")  # reference lines: grey, told apart by their dashes
CSV_COLUMNS = ("agent", "metric", "env_steps", "mean", "spread_low", "spread_high", "n_seeds")
EVENT_GLOB = "**/events.out.tfevents.*"
SEED_FOLDER = re.compile(r"seed\d+")


@dataclass(frozen=True)
class Run:
    """One run folder, what its path says it ran, and its event files (oldest first)."""

    folder: Path
    env: str
    agent: str
    prefix: str
    seed: str
    event_files: tuple[Path, ...]


class Series(NamedTuple):
    """One scalar of one run: increasing env steps and their values."""

    steps: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Curve:
    """One plotted line: a group's metric on its env-step grid, with the seeds behind each point."""

    label: str
    metric: str
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_seeds: np.ndarray


# ---------------------------------------------------------------------------- finding runs


def swept_run_folders(folder: Path) -> list[Path]:
    """The run folders of the Hydra sweeps under ``folder`` (``<sweep>/multirun.yaml`` beside
    ``<sweep>/<job>/.hydra/``): each job's ``run_dir``, taken from the folder it started in."""
    folders = []
    for record in sorted(folder.glob("**/multirun.yaml")):
        for config in sorted(record.parent.glob("*/.hydra/config.yaml")):
            run_dir = OmegaConf.select(OmegaConf.load(config), "run_dir")
            hydra = config.with_name("hydra.yaml")
            started_in = "."
            if hydra.is_file():
                started_in = OmegaConf.select(
                    OmegaConf.load(hydra), "hydra.runtime.cwd", default="."
                )
            if run_dir is not None:
                folders.append(Path(started_in) / run_dir)
    return folders


def _run_folder(event_file: Path, searched: Path) -> Path:
    """The nearest ``seed<k>`` folder above an event file, else the folder searched."""
    for folder in event_file.parents:
        if SEED_FOLDER.fullmatch(folder.name):
            return folder
    return searched


def _describe(folder: Path, event_files: set[Path]) -> Run:
    """Name a run from ``.../<env>/<agent>/<prefix>/seed<k>``, else by its folder name alone."""
    files = tuple(sorted(event_files))
    if SEED_FOLDER.fullmatch(folder.name) and len(folder.parents) >= 3:
        env, agent, prefix = (folder.parents[i].name for i in (2, 1, 0))
        return Run(folder, env, agent, prefix, folder.name, files)
    return Run(folder, "", folder.name, "", folder.name, files)


def find_runs(paths: Sequence[Path]) -> list[Run]:
    """The runs under ``paths``: run folders, folders of run folders, or Hydra sweep folders."""
    found: dict[Path, set[Path]] = {}
    for path in paths:
        if not path.is_dir():
            raise UserError(
                f"{path} is not a folder; give run folders, folders of runs "
                "(e.g. outputs/rl/maze) or sweep folders (outputs/multirun/rl/<time>_<pid>)"
            )
        searched = path.resolve()
        for root in [searched, *swept_run_folders(searched)]:
            for event_file in root.glob(EVENT_GLOB):
                event_file = event_file.resolve()
                found.setdefault(_run_folder(event_file, root), set()).add(event_file)
    if not found:
        raise UserError(
            f"no TensorBoard event files under {', '.join(map(str, paths))}; give skillcritic-rl "
            "run folders (they log with logger=tensorboard, the default)"
        )
    return [_describe(folder, files) for folder, files in sorted(found.items())]


# ---------------------------------------------------------------------------- reading


def read_run(run: Run, tags: Sequence[str]) -> dict[str, Series]:
    """The run's scalars ``tags`` (those it has), merged over its event files.

    Files are taken in the order they were started; a later file (a resumed run) replaces what
    the earlier ones logged from its own first step on, so duplicate steps keep the later value
    and the steps a killed run logged after its last checkpoint are dropped. A partly written last
    record (a run in progress) is ignored. Non-finite values are skipped.
    """
    loaded = []
    for path in run.event_files:
        events = EventAccumulator(
            str(path), size_guidance={"scalars": 0}, purge_orphaned_data=False
        )
        events.Reload()
        scalars = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}
        if any(scalars.values()):
            start = min(event.step for points in scalars.values() for event in points)
            loaded.append((events.FirstEventTimestamp(), path, start, scalars))
    loaded.sort(key=lambda file: file[:2])
    merged: dict[str, dict[int, float]] = {tag: {} for tag in tags}
    for _, _, start, scalars in loaded:
        for tag, points in merged.items():
            merged[tag] = {step: value for step, value in points.items() if step < start}
            merged[tag].update(
                (event.step, event.value)
                for event in scalars.get(tag, [])
                if math.isfinite(event.value)
            )
    series = {}
    for tag, points in merged.items():
        if points:
            steps = sorted(points)
            series[tag] = Series(np.array(steps), np.array([points[step] for step in steps]))
    return series


# ---------------------------------------------------------------------------- aggregating


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs by label: the agent, plus the env and the prefix where the runs differ in them."""
    several_envs = len({run.env for run in runs}) > 1
    several_prefixes = len({run.prefix for run in runs}) > 1
    groups: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda run: run.folder):
        parts = [run.env if several_envs else "", run.agent, run.prefix if several_prefixes else ""]
        groups.setdefault("/".join(part for part in parts if part), []).append(run)
    return dict(sorted(groups.items()))


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over the last ``window`` points (fewer at the start)."""
    return np.array([values[max(0, i - window + 1) : i + 1].mean() for i in range(len(values))])


def aggregate(
    label: str, metric: str, seeds: Sequence[Series], window: int, spread: str = "std"
) -> Curve:
    """Smooth each seed, put the seeds on the union of their steps and take mean and spread.

    Each seed is interpolated linearly inside its own range of steps only (never extrapolated),
    so a step's mean, spread (population std, or min and max) and ``n_seeds`` count only the
    seeds that logged around it.
    """
    grid = np.unique(np.concatenate([series.steps for series in seeds]))
    table = np.full((len(seeds), len(grid)), np.nan)
    for row, series in zip(table, seeds, strict=True):
        inside = (grid >= series.steps[0]) & (grid <= series.steps[-1])
        row[inside] = np.interp(grid[inside], series.steps, smooth(series.values, window))
    mean = np.nanmean(table, axis=0)
    if spread == "std":
        std = np.nanstd(table, axis=0)
        low, high = mean - std, mean + std
    else:
        low, high = np.nanmin(table, axis=0), np.nanmax(table, axis=0)
    return Curve(label, metric, grid, mean, low, high, np.isfinite(table).sum(axis=0))


def block_success(series: Series, block: int) -> Series:
    """Success per block of ``block`` env steps (blocks ``(k·block, (k+1)·block]``): 1 where any
    episode logged in the block succeeded, else 0, at the block's last logged step (so a block
    still in progress shows where it has got to).

    This is the reading of SPiRL's maze figure guessed in clvrai/spirl#32 (an epoch of 10⁵ env
    steps counts as a success when any of its episodes is rewarded); a logged point averages the
    episodes since the previous log, so a point above 0 means at least one success.
    """
    blocks = (series.steps - 1) // block
    starts = np.flatnonzero(np.diff(blocks, prepend=-1))  # first point of each block
    last = np.append(starts[1:], len(blocks)) - 1
    hits = np.maximum.reduceat(series.values > 0, starts).astype(float)
    return Series(series.steps[last], hits)


def panels(source: str, tags: Sequence[str] | None = None) -> dict[str, tuple[str, str]]:
    """What to plot: metric -> (TensorBoard tag, y label). ``source``'s success and return, or
    the given ``tags`` (e.g. ``hl/alpha``), each its own metric."""
    if tags:
        return {tag: (tag, tag) for tag in tags}
    return {metric: (f"{source}/{metric}", label) for metric, label in METRICS.items()}


def read_runs(
    runs: Sequence[Run], source: str, tags: Sequence[str] | None = None
) -> dict[Run, dict[str, Series]]:
    """Each run's series of ``panels(source, tags)`` (keys: the metric), for the runs that have
    logged any of them."""
    metric_of = {tag: metric for metric, (tag, _) in panels(source, tags).items()}
    found = {}
    for run in runs:
        if series := read_run(run, list(metric_of)):
            found[run] = {metric_of[tag]: values for tag, values in series.items()}
    if not found:
        hint = (
            "check the names in TensorBoard"
            if tags
            else "rollout/* comes at each epoch end (every epoch_env_steps), train/* soon after "
            "the start: wait, or try --source train"
        )
        raise UserError(
            f"none of the {len(runs)} runs found has logged {' or '.join(metric_of)} yet; {hint}"
        )
    return found


def learning_curves(
    series: dict[Run, dict[str, Series]],
    window: int,
    spread: str = "std",
    metrics: Sequence[str] = tuple(METRICS),
) -> list[Curve]:
    """One curve per group of runs (``group_runs``) and metric that any of its runs logged."""
    curves = []
    for metric in metrics:
        for label, members in group_runs(list(series)).items():
            seeds = [series[run][metric] for run in members if metric in series[run]]
            if seeds:
                curves.append(aggregate(label, metric, seeds, window, spread))
    return curves


# ---------------------------------------------------------------------------- writing


def _write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a temp file in the same folder, then rename: no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(temporary)
    os.replace(temporary, path)
    return path


def write_csv(curves: Sequence[Curve], path: Path) -> Path:
    """The plotted values, one row per curve and step (columns ``CSV_COLUMNS``)."""

    def write(temporary: Path) -> None:
        with temporary.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(CSV_COLUMNS)
            for c in curves:
                for row in zip(c.steps, c.mean, c.low, c.high, c.n_seeds, strict=True):
                    writer.writerow(
                        [c.label, c.metric, int(row[0]), *map(float, row[1:4]), int(row[4])]
                    )

    return _write_atomically(path, write)


def _legend(curve: Curve) -> str:
    """The label with its number of seeds (and how many reach the last step, if fewer)."""
    most, last = int(curve.n_seeds.max()), int(curve.n_seeds[-1])
    return (
        f"{curve.label} (n={most})"
        if last == most
        else f"{curve.label} (n={most}, {last} at the end)"
    )


def parse_reference(text: str) -> tuple[float, str]:
    """``VALUE=LABEL`` (e.g. ``297=AI at 0.7``) as a reference line's value and label."""
    value, _, label = text.partition("=")
    try:
        return float(value), label.strip() or value.strip()
    except ValueError:
        raise UserError(
            f"--reference takes VALUE=LABEL, got {text!r}; e.g. --reference '297=AI at 0.7'"
        ) from None


def draw_curves(
    curves: Sequence[Curve],
    path: Path,
    title: str,
    y_labels: dict[str, str] = METRICS,
    references: Sequence[tuple[float, str]] = (),
) -> Path:
    """One panel per metric of ``y_labels`` (default: success, return) vs env steps: mean lines
    and shaded spreads, as a PNG; ``references`` (value, label) are grey horizontal lines on
    every panel but success (e.g. a baseline's return)."""
    n = len(y_labels)
    figure, axes = plt.subplots(1, n, figsize=(6 * n, 4.5), squeeze=False)
    labels = sorted({curve.label for curve in curves})
    colors = {label: plt.cm.tab10(i % 10) for i, label in enumerate(labels)}
    for axis, (metric, y_label) in zip(axes[0], y_labels.items(), strict=True):
        shown = [curve for curve in curves if curve.metric == metric]
        for curve in shown:
            color = colors[curve.label]
            marker = "o" if len(curve.steps) == 1 else None  # a single point is no line
            axis.plot(curve.steps, curve.mean, color=color, marker=marker, label=_legend(curve))
            axis.fill_between(curve.steps, curve.low, curve.high, color=color, alpha=0.2, lw=0)
        if metric != "success":
            for i, (value, label) in enumerate(references):
                style = REFERENCE_STYLES[i % len(REFERENCE_STYLES)]
                axis.axhline(value, color="0.3", linestyle=style, lw=1, label=label)
        if shown:
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, f"no {metric} logged", ha="center", transform=axis.transAxes)
        axis.set_xlabel("env steps")
        axis.set_ylabel(y_label)
        axis.grid(alpha=0.3)
        if metric == "success":
            axis.set_ylim(-0.05, 1.05)
    figure.suptitle(title)
    figure.tight_layout()

    def write(temporary: Path) -> None:
        figure.savefig(temporary, dpi=100, format="png")
        plt.close(figure)

    return _write_atomically(path, write)


def default_title(runs: Sequence[Run]) -> str:
    """The envs and prefixes of the runs, e.g. ``maze, prefix default`` (else their agents)."""
    envs = ", ".join(sorted({run.env for run in runs if run.env}))
    prefixes = ", ".join(sorted({run.prefix for run in runs if run.prefix}))
    parts = [envs, f"prefix {prefixes}" if prefixes else ""]
    return ", ".join(part for part in parts if part) or ", ".join(sorted({r.agent for r in runs}))


def plot_runs(
    paths: Sequence[Path],
    out: Path | None = None,
    source: str = "rollout",
    window: int | None = None,
    spread: str = "std",
    title: str | None = None,
    tags: Sequence[str] | None = None,
    references: Sequence[str] = (),
    success_block: int | None = None,
) -> tuple[Path, Path]:
    """Find the runs under ``paths``, draw their curves into ``out`` (PNG) and write the CSV
    beside it: ``source``'s success and return, or the logged scalars ``tags``. ``out`` defaults
    to ``plot_<source>.png`` (``plot_tags.png``) in the folder holding all ``paths`` (the current
    folder if that is not writable); ``window`` to 1 point for rollout, 10 for train and tags.
    ``references`` are ``VALUE=LABEL`` horizontal lines (drawn, not in the CSV).
    ``success_block`` plots success per block of that many env steps (``block_success``),
    unsmoothed unless ``window`` says otherwise."""
    if success_block is not None and (tags or success_block < 1):
        raise UserError(
            "--success-block takes a positive number of env steps and plots success, not --tags; "
            "e.g. --source train --success-block 100000"
        )
    if window is None:
        window = 1 if success_block else DEFAULT_WINDOW["train" if tags else source]
    if out is None:
        folder = Path(os.path.commonpath([path.absolute() for path in paths]))
        name = "plot_tags.png" if tags else f"plot_{source}.png"
        out = (folder if os.access(folder, os.W_OK) else Path.cwd()) / name
    if out.suffix != ".png":
        raise UserError(f"--out must name a .png file, got {out}; e.g. --out curves.png")
    if window < 1:
        raise UserError(
            f"the smoothing window must be at least 1 point, got {window}; e.g. --window 5"
        )
    lines = [parse_reference(text) for text in references]
    shown = panels(source, tags)
    series = read_runs(find_runs(paths), source, tags)
    what = "" if tags else f"{source}/* = {SOURCES[source]}; "
    if success_block:
        for metrics in series.values():
            if "success" in metrics:
                metrics["success"] = block_success(metrics["success"], success_block)
        shown["success"] = (shown["success"][0], f"success per {success_block:,} env steps")
        what += f"success = any successful episode in a block of {success_block:,} env steps; "
    curves = learning_curves(series, window, spread, list(shown))
    smoothing = f"trailing mean of {window} logged points" if window > 1 else "not smoothed"
    subtitle = f"{what}{SPREADS[spread]}; {smoothing}"
    headline = title or default_title(list(series))
    y_labels = {metric: label for metric, (_, label) in shown.items()}
    png = draw_curves(curves, out, f"{headline}\n{subtitle}", y_labels, lines)
    return png, write_csv(curves, out.with_suffix(".csv"))


def plot_main(argv: Sequence[str] | None = None) -> None:
    """``skillcritic-plot PATH [PATH ...] [--out FILE.png] [--source rollout|train] [--window N]
    [--spread std|minmax] [--title T] [--tags TAG ...] [--reference VALUE=LABEL ...]
    [--success-block ENV_STEPS]``: prints
    the PNG and CSV paths."""
    parser = argparse.ArgumentParser(
        prog="skillcritic-plot",
        description="Success and return vs env steps of skillcritic-rl runs, one line per agent "
        "(mean and spread over seeds), as a PNG and a CSV of the plotted values.",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="run folders, folders of runs (outputs/rl/maze, outputs/rl/maze/*/PREFIX) "
        "or sweep folders",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE.png",
        help="the PNG (default: plot_<source>.png in the folder holding all PATHs); "
        "the CSV goes beside it",
    )
    parser.add_argument(
        "--source",
        choices=sorted(SOURCES),
        default="rollout",
        help="rollout: evaluation episodes (default); train: training episodes",
    )
    parser.add_argument(
        "--window",
        type=int,
        metavar="N",
        help="trailing moving average over N logged points of each seed "
        "(default: 1 for rollout, 10 for train)",
    )
    parser.add_argument(
        "--spread",
        choices=sorted(SPREADS),
        default="std",
        help="the shaded band: std over seeds (default) or min-max",
    )
    parser.add_argument(
        "--title", metavar="T", help="the first title line (default: the envs and prefixes)"
    )
    parser.add_argument(
        "--tags",
        nargs="+",
        metavar="TAG",
        help="plot these logged scalars instead of success and return, one panel each "
        "(e.g. hl/alpha hl/regulariser hl/q_mean)",
    )
    parser.add_argument(
        "--reference",
        nargs="+",
        default=[],
        metavar="VALUE=LABEL",
        help="grey horizontal lines on every panel but success, e.g. a baseline's return "
        "(--reference '297=AI at 0.7' '328=AI at 0.9')",
    )
    parser.add_argument(
        "--success-block",
        type=int,
        metavar="ENV_STEPS",
        help="plot success per block of ENV_STEPS env steps: 1 where any episode in the block "
        "succeeded (the per-epoch reading of SPiRL's maze figure: --source train "
        "--success-block 100000)",
    )
    args = parser.parse_args(argv)
    try:
        png, table = plot_runs(
            args.paths,
            args.out,
            args.source,
            args.window,
            args.spread,
            args.title,
            args.tags,
            args.reference,
            args.success_block,
        )
    except UserError as error:
        sys.stderr.write(f"error: {error}\n")  # one plain line: no wrapping, no traceback
        sys.exit(USER_ERROR_EXIT)
    print(png)
    print(table)
