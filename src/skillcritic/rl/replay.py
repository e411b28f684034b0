"""A uniform replay buffer: a numpy ring over named fields with fixed shapes and dtypes.

Images are meant to be stored compactly (uint8); float64 fields are refused (reference §6.25: the
published code stored maze frames as float64, ~49 GB for the LL buffer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

FieldSpec = tuple[tuple[int, ...], npt.DTypeLike]


class ReplayBuffer:
    """Ring buffer of ``capacity`` rows; each field is one preallocated contiguous array.

    ``fields`` maps a name to ``(shape, dtype)`` of one row, e.g.
    ``{"state": ((4,), np.float32), "view": ((2, 3, 32, 32), np.uint8), "terminated": ((), bool)}``.
    """

    def __init__(self, fields: Mapping[str, FieldSpec], capacity: int) -> None:
        """Allocate zeroed arrays; raise ValueError for float64 / complex / object dtypes."""
        if capacity <= 0:
            raise ValueError(f"ReplayBuffer: capacity must be positive, got {capacity}")
        if not fields:
            raise ValueError("ReplayBuffer: needs at least one field")
        self._capacity = int(capacity)
        self._specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for name, (shape, dtype) in fields.items():
            dt = np.dtype(dtype)
            if (dt.kind == "f" and dt.itemsize >= 8) or dt.kind in "cOSUVMm":
                raise ValueError(
                    f"ReplayBuffer: field {name!r} has dtype {dt}; use float32 (or uint8 for "
                    f"images), never float64"
                )
            self._specs[name] = (tuple(int(s) for s in shape), dt)
        self._data = {
            name: np.zeros((self._capacity, *shape), dtype=dt)
            for name, (shape, dt) in self._specs.items()
        }
        self._pos = 0  # next row to write
        self._size = 0  # rows holding data

    @property
    def capacity(self) -> int:
        """Maximum number of rows."""
        return self._capacity

    @property
    def fields(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Per-row ``(shape, dtype)`` of every field."""
        return dict(self._specs)

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated arrays."""
        return sum(a.nbytes for a in self._data.values())

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (
            f"ReplayBuffer(size={self._size}, capacity={self._capacity}, "
            f"fields={list(self._specs)})"
        )

    def add(self, batch: Mapping[str, npt.ArrayLike]) -> None:
        """Append N rows at once (every field, leading dim N), overwriting the oldest when full.

        Values are cast to the field dtype with numpy's ``same_kind`` rule (float64 → float32 is
        fine, float → uint8 or float → bool is refused). Adding N > capacity rows keeps the last
        ``capacity`` of them, exactly as N single-row adds would.
        """
        if batch.keys() != self._specs.keys():
            raise ValueError(
                f"ReplayBuffer.add: expected fields {sorted(self._specs)}, got {sorted(batch)}"
            )
        arrays: dict[str, np.ndarray] = {}
        n: int | None = None
        for name, (shape, dt) in self._specs.items():
            arr = np.asarray(batch[name])
            if arr.ndim == 0:
                raise ValueError(f"ReplayBuffer.add: field {name!r} needs a leading row dimension")
            if n is None:
                n = arr.shape[0]
            if arr.shape != (n, *shape):
                raise ValueError(
                    f"ReplayBuffer.add: field {name!r}: expected shape (N, *{shape}) with N={n}, "
                    f"got {arr.shape}"
                )
            if not np.can_cast(arr.dtype, dt, casting="same_kind"):
                raise ValueError(
                    f"ReplayBuffer.add: field {name!r}: cannot store {arr.dtype} as {dt}"
                )
            arrays[name] = arr
        assert n is not None
        if n == 0:
            return
        # With more rows than capacity only the last `capacity` survive; they land where
        # sequential writes would have put them, i.e. starting at (pos + n − capacity) mod capacity.
        start = self._pos
        if n > self._capacity:
            start = (self._pos + n - self._capacity) % self._capacity
            arrays = {k: v[n - self._capacity :] for k, v in arrays.items()}
        m = min(n, self._capacity)
        first = min(m, self._capacity - start)  # rows before the wrap
        for name, arr in arrays.items():
            dst = self._data[name]
            dst[start : start + first] = arr[:first]
            dst[: m - first] = arr[first:]
        self._pos = (self._pos + n) % self._capacity
        self._size = min(self._size + n, self._capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, Tensor]:
        """``batch_size`` rows drawn uniformly with replacement from the stored rows, as tensors.

        Dtypes are kept (uint8 stays uint8, bool stays bool); the tensors are fresh CPU copies.
        """
        if self._size == 0:
            raise ValueError("ReplayBuffer.sample: the buffer is empty")
        if batch_size <= 0:
            raise ValueError(f"ReplayBuffer.sample: batch_size must be positive, got {batch_size}")
        idx = rng.integers(0, self._size, size=batch_size)
        return {name: torch.from_numpy(arr[idx]) for name, arr in self._data.items()}

    def state_dict(self) -> dict[str, Any]:
        """Stored rows (as tensors), write position and size; loadable with weights_only=True.

        Like ``nn.Module.state_dict`` the tensors share memory with the buffer, so save them before
        adding more rows.
        """
        return {
            "capacity": self._capacity,
            "pos": self._pos,
            "size": self._size,
            "fields": {
                name: torch.from_numpy(arr[: self._size]) for name, arr in self._data.items()
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore rows, position and size from :meth:`state_dict` (same capacity and fields)."""
        capacity, pos, size = int(state["capacity"]), int(state["pos"]), int(state["size"])
        if capacity != self._capacity:
            raise ValueError(
                f"ReplayBuffer.load_state_dict: expected capacity {self._capacity}, got {capacity}"
            )
        if not (
            0 <= size <= capacity and 0 <= pos < capacity and (size == capacity or pos == size)
        ):
            raise ValueError(
                f"ReplayBuffer.load_state_dict: inconsistent pos={pos}, size={size} "
                f"for capacity {capacity}"
            )
        fields = state["fields"]
        if fields.keys() != self._specs.keys():
            raise ValueError(
                f"ReplayBuffer.load_state_dict: expected fields {sorted(self._specs)}, "
                f"got {sorted(fields)}"
            )
        loaded = {}
        for name, (shape, dt) in self._specs.items():
            arr = torch.as_tensor(fields[name]).numpy()
            if arr.shape != (size, *shape) or arr.dtype != dt:
                raise ValueError(
                    f"ReplayBuffer.load_state_dict: field {name!r}: expected {(size, *shape)} "
                    f"{dt}, got {arr.shape} {arr.dtype}"
                )
            loaded[name] = arr
        for name, arr in loaded.items():
            self._data[name][:size] = arr
            self._data[name][size:] = 0
        self._pos, self._size = pos, size
