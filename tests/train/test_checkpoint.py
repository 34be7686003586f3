"""Checkpoint files: atomic writes, weights_only reads, clear errors, and RNG state round trips."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sgc.errors import InputFileError
from sgc.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def _state() -> dict:
    return {
        "model": {"conv.weight": torch.randn(4, 3, 3, 3), "conv.bias": torch.zeros(4)},
        "epoch": 7,
        "best_f1": 0.625,
        "run": "unet-a",
        "history": [0.1, 0.2],
        "config": {"lr": 1e-3, "bands": ["u", "g", "r", "i", "z"]},
    }


def test_round_trip(tmp_path: Path) -> None:
    state = _state()
    path = save_checkpoint(tmp_path / "ckpt" / "last.pt", state)
    assert path == tmp_path / "ckpt" / "last.pt"
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["conv.weight"], state["model"]["conv.weight"])
    assert {k: v for k, v in loaded.items() if k != "model"} == {
        k: v for k, v in state.items() if k != "model"
    }


def test_save_replaces_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})
    save_checkpoint(str(path), {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_failed_save_keeps_old_file_and_removes_temporary(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})

    class Unsaveable:
        def __reduce__(self):
            raise TypeError("cannot pickle")

    with pytest.raises(TypeError):
        save_checkpoint(path, {"bad": Unsaveable()})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found") as info:
        load_checkpoint(tmp_path / "absent.pt")
    assert info.value.path == tmp_path / "absent.pt"


@pytest.mark.parametrize("keep", [0, 10, 0.5])
def test_truncated_file(tmp_path: Path, keep: float) -> None:
    path = save_checkpoint(tmp_path / "last.pt", _state())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(InputFileError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(InputFileError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        load_checkpoint(tmp_path)


class _Payload:
    """A class weights_only loading must refuse to build."""


def test_refuses_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"obj": _Payload()}, path)
    with pytest.raises(InputFileError, match="holds Python code or objects") as info:
        load_checkpoint(path)
    assert "_Payload" in info.value.reason and "it was not loaded" in info.value.reason
    assert "corrupt" not in info.value.reason
    assert "weights_only` set to `False" not in info.value.reason


def test_non_dict_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(InputFileError, match="expected a dict"):
        load_checkpoint(path)


def _draws() -> tuple:
    return (
        [random.random() for _ in range(3)],
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        float(np.random.standard_normal()),
        torch.rand(3).tolist(),
        torch.randn(2).tolist(),
    )


def test_rng_state_survives_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    _draws()
    # An odd number of Gaussian draws leaves cached second values in random and NumPy; they must survive.
    random.gauss(0, 1)
    np.random.standard_normal()
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    expected = _draws()

    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert _draws() == expected


def test_rng_state_is_plain_data() -> None:
    state = rng_state()
    assert isinstance(state["python"]["internal"], list)
    assert state["numpy"]["key"].dtype == torch.int64
    assert state["cuda"] == [] or all(isinstance(s, torch.Tensor) for s in state["cuda"])
