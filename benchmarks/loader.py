"""Window loader speed: load a dataset into memory, then time ``WindowSampler.sample``.

    .venv/bin/python benchmarks/loader.py [--data-dir data]
        [--dataset-id skillcritic/maze-demos-v0] [--n-actions 11] [--batch-size 128]

Target: <= 2 ms per batch of 128 windows without views.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

from skillcritic.data.minari_io import DatasetError, load_dataset
from skillcritic.data.windows import EpisodeArrays, WindowSampler


def time_sampler(sampler: WindowSampler, batch_size: int, seconds: float) -> tuple[float, dict]:
    """Mean seconds per ``sample(batch_size)`` over about ``seconds`` of sampling."""
    rng = np.random.default_rng(0)
    batch = sampler.sample(batch_size, rng)  # warm up (thread pool, caches)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or count < 5:
        sampler.sample(batch_size, rng)
        count += 1
    return elapsed / count, {k: tuple(v.shape) for k, v in batch.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dataset-id", default="skillcritic/maze-demos-v0")
    parser.add_argument("--n-actions", type=int, default=11)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per configuration")
    args = parser.parse_args()

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}"
    )
    try:
        start = time.perf_counter()
        dataset = load_dataset(args.data_dir, args.dataset_id, "skillcritic-data env=maze")
        arrays = EpisodeArrays.from_minari(dataset)
    except DatasetError as error:
        print(error, file=sys.stderr)
        return 2
    print(
        f"{args.dataset_id}: {arrays.n_episodes} episodes, {int(arrays.lengths.sum())} "
        f"transitions, loaded in {time.perf_counter() - start:.2f} s"
    )
    episodes = np.arange(arrays.n_episodes)
    configs = [("no views", False, None)]
    if arrays.walls is not None:
        threads = min(8, torch.get_num_threads())
        configs += [("views, 1 thread", True, 1), (f"views, {threads} threads", True, threads)]
    for label, with_views, threads in configs:
        start = time.perf_counter()
        sampler = WindowSampler(arrays, episodes, args.n_actions, with_views, view_threads=threads)
        built = time.perf_counter() - start
        per_batch, shapes = time_sampler(sampler, args.batch_size, args.seconds)
        print(
            f"{label:>18}: {per_batch * 1e3:7.3f} ms/batch, {1 / per_batch:8.1f} batches/s "
            f"(sampler built in {built * 1e3:.0f} ms, {sampler.n_windows} windows) {shapes}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
