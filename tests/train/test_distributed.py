"""Process-group setup, reductions and the autocast dtype, in one process and across two Gloo ranks."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sgc.errors import SgcError
from sgc.evaluate.metrics import ConfusionMatrix
from sgc.train.distributed import DistInfo, all_reduce_sum, broadcast_object, cleanup, setup

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_single_process_setup(single_process: None, no_cuda: None) -> None:
    info = setup()
    assert info == DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None)
    assert info.is_main and not info.distributed
    assert not dist.is_initialized()
    cleanup()  # nothing to destroy: must not fail


def test_world_size_one_is_single_process(single_process: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    info = setup("cpu")
    assert info.world_size == 1 and info.backend is None and info.device == torch.device("cpu")
    assert not dist.is_initialized()


def test_cuda_without_cuda_is_an_error(single_process: None, no_cuda: None) -> None:
    for device in ("cuda", "cuda:1"):
        with pytest.raises(SgcError, match="no CUDA"):
            setup(device)


def test_unknown_device(single_process: None) -> None:
    with pytest.raises(SgcError, match="unknown device"):
        setup("tpu-ish")


def test_missing_rendezvous_variables(single_process: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SgcError, match="MASTER_ADDR, MASTER_PORT unset"):
        setup("cpu")


def test_helpers_are_no_ops_in_one_process(single_process: None) -> None:
    t = torch.tensor([1.0, 2.0])
    assert all_reduce_sum(t) is t
    assert t.tolist() == [1.0, 2.0]
    obj = {"plan": [1, 2]}
    assert broadcast_object(obj) is obj


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(local_rank: int, port: int, out_dir: str) -> None:
    """One rank of the two-process test: set up from torchrun's variables, reduce, report to a file."""
    import os

    os.environ.update(
        RANK=str(local_rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(local_rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    # "auto" picks the CPU here; on a GPU machine ask for it, as one GPU cannot host two NCCL ranks.
    info = setup("cpu" if torch.cuda.is_available() else "auto")
    again = setup("cpu")  # a second call reuses the group
    t = all_reduce_sum(torch.tensor([float(info.rank + 1), 10.0]))
    cm = ConfusionMatrix()
    cm.update(torch.full((1, 2, 2), info.rank), torch.full((1, 2, 2), info.rank))
    counts = all_reduce_sum(cm.counts).tolist()
    shared = broadcast_object({"from": info.rank} if info.is_main else None)
    cleanup()
    report = {
        "rank": info.rank,
        "world": info.world_size,
        "local_rank": info.local_rank,
        "device": str(info.device),
        "backend": info.backend,
        "again": [again.rank, again.world_size, again.backend],
        "sum": t.tolist(),
        "counts": counts,
        "shared": shared,
        "destroyed": not dist.is_initialized(),
    }
    Path(out_dir, f"rank{info.rank}.json").write_text(json.dumps(report))


def test_two_gloo_processes(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["rank"] == rank and report["local_rank"] == rank and report["world"] == 2
        assert report["device"] == "cpu" and report["backend"] == "gloo"
        assert report["again"] == [rank, 2, "gloo"]
        assert report["sum"] == [3.0, 20.0]
        assert report["counts"] == [[4, 0, 0], [0, 4, 0], [0, 0, 0]]
        assert report["shared"] == {"from": 0}
        assert report["destroyed"]
