"""skillcritic.rl.replay: ring order, sampling, dtypes, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from skillcritic.rl.replay import ReplayBuffer

FIELDS = {
    "state": ((4,), np.float32),
    "view": ((2, 3, 8, 8), np.uint8),
    "action": ((2,), np.float32),
    "k": ((), np.int64),
    "reward": ((), np.float32),
    "terminated": ((), bool),
    "truncated": ((), bool),
}


def rows(start: int, n: int) -> dict[str, np.ndarray]:
    """n rows whose every field encodes the row number start..start+n−1."""
    i = np.arange(start, start + n)
    return {
        "state": np.repeat(i[:, None], 4, axis=1).astype(np.float32),
        "view": np.broadcast_to(
            (i % 256).astype(np.uint8)[:, None, None, None, None], (n, 2, 3, 8, 8)
        ),
        "action": np.stack([i, -i], axis=1).astype(np.float64),  # cast to float32 on add
        "k": i % 10,
        "reward": i.astype(np.float32),
        "terminated": i % 3 == 0,
        "truncated": i % 5 == 0,
    }


def test_wrap_around_order() -> None:
    buf = ReplayBuffer(FIELDS, capacity=5)
    buf.add(rows(0, 3))
    assert len(buf) == 3
    buf.add(rows(3, 4))  # rows 3, 4 fill the end, rows 5, 6 overwrite slots 0, 1
    state = buf.state_dict()
    assert len(buf) == 5 and buf.capacity == 5 and state["pos"] == 2 and state["size"] == 5
    assert state["fields"]["reward"].tolist() == [5, 6, 2, 3, 4]
    assert state["fields"]["view"][:, 0, 0, 0, 0].tolist() == [5, 6, 2, 3, 4]


@pytest.mark.parametrize("start_pos", [0, 3])
def test_adding_more_rows_than_capacity_equals_single_adds(start_pos: int) -> None:
    bulk, single = ReplayBuffer(FIELDS, capacity=5), ReplayBuffer(FIELDS, capacity=5)
    bulk.add(rows(100, start_pos))
    bulk.add(rows(0, 12))
    single.add(rows(100, start_pos))
    for i in range(12):
        single.add(rows(i, 1))
    a, b = bulk.state_dict(), single.state_dict()
    assert (a["pos"], a["size"]) == (b["pos"], b["size"]) == ((start_pos + 12) % 5, 5)
    for name in FIELDS:
        assert torch.equal(a["fields"][name], b["fields"][name])


def test_sample_dtypes_shapes_and_support() -> None:
    buf = ReplayBuffer(FIELDS, capacity=10)
    buf.add(rows(0, 3))
    batch = buf.sample(64, np.random.default_rng(0))
    expected_dtypes = {
        "state": torch.float32,
        "view": torch.uint8,
        "action": torch.float32,
        "k": torch.int64,
        "reward": torch.float32,
        "terminated": torch.bool,
        "truncated": torch.bool,
    }
    for name, (shape, _) in FIELDS.items():
        assert batch[name].shape == (64, *shape), name
        assert batch[name].dtype == expected_dtypes[name], name
    # only the three stored rows are drawn, and each of them is
    assert set(batch["reward"].tolist()) == {0.0, 1.0, 2.0}
    # fields of one sampled row stay together
    i = batch["reward"].long()
    assert torch.equal(batch["action"][:, 1], -i.float())
    assert torch.equal(batch["terminated"], i % 3 == 0)


def test_state_dict_round_trip_through_torch_save(tmp_path: Path) -> None:
    buf = ReplayBuffer(FIELDS, capacity=7)
    buf.add(rows(0, 10))  # wrapped: pos 3
    path = tmp_path / "replay.pt"
    torch.save({"replay": buf.state_dict()}, path)
    fresh = ReplayBuffer(FIELDS, capacity=7)
    fresh.load_state_dict(torch.load(path, weights_only=True)["replay"])
    assert len(fresh) == len(buf) == 7
    a = buf.sample(32, np.random.default_rng(1))
    b = fresh.sample(32, np.random.default_rng(1))
    for name in FIELDS:
        assert torch.equal(a[name], b[name]), name
    # the write position was restored too: the next add overwrites the same slot in both
    buf.add(rows(50, 1))
    fresh.add(rows(50, 1))
    assert torch.equal(buf.state_dict()["fields"]["reward"], fresh.state_dict()["fields"]["reward"])


def test_partial_buffer_round_trip() -> None:
    buf = ReplayBuffer(FIELDS, capacity=7)
    buf.add(rows(0, 2))
    fresh = ReplayBuffer(FIELDS, capacity=7)
    fresh.add(rows(40, 6))  # stale content is replaced
    fresh.load_state_dict(buf.state_dict())
    assert len(fresh) == 2
    assert fresh.state_dict()["fields"]["reward"].tolist() == [0, 1]


def test_load_state_dict_rejects_mismatch() -> None:
    buf = ReplayBuffer(FIELDS, capacity=7)
    buf.add(rows(0, 2))
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(FIELDS, capacity=8).load_state_dict(buf.state_dict())
    other = {**FIELDS, "state": ((5,), np.float32)}
    with pytest.raises(ValueError, match="state"):
        ReplayBuffer(other, capacity=7).load_state_dict(buf.state_dict())


def test_float64_field_rejected() -> None:
    with pytest.raises(ValueError, match="float64"):
        ReplayBuffer({**FIELDS, "obs": ((4,), np.float64)}, capacity=4)
    with pytest.raises(ValueError, match="float64"):
        ReplayBuffer({"obs": ((4,), float)}, capacity=4)


def test_add_validates_input() -> None:
    buf = ReplayBuffer(FIELDS, capacity=4)
    missing = rows(0, 2)
    del missing["k"]
    with pytest.raises(ValueError, match="fields"):
        buf.add(missing)
    bad_shape = rows(0, 2)
    bad_shape["state"] = bad_shape["state"][:, :3]
    with pytest.raises(ValueError, match="state"):
        buf.add(bad_shape)
    bad_n = rows(0, 2)
    bad_n["reward"] = bad_n["reward"][:1]
    with pytest.raises(ValueError, match="reward"):
        buf.add(bad_n)
    bad_dtype = rows(0, 2)
    bad_dtype["view"] = bad_dtype["view"].astype(np.float32)  # float images into uint8: refused
    with pytest.raises(ValueError, match="view"):
        buf.add(bad_dtype)
    assert len(buf) == 0
    with pytest.raises(ValueError, match="empty"):
        buf.sample(2, np.random.default_rng(0))


def test_nbytes() -> None:
    buf = ReplayBuffer(FIELDS, capacity=10)
    # per row: state 16 + view 384 + action 8 + k 8 + reward 4 + terminated 1 + truncated 1 = 422
    assert buf.nbytes == 10 * 422
