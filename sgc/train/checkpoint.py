"""Checkpoint files written atomically and read without unpickling arbitrary objects.

A checkpoint is a dict of tensors, numbers, strings, dicts and lists: exactly what
``torch.load(..., weights_only=True)`` accepts, so loading one never runs code from the file. The RNG
state of ``random``, NumPy and torch is turned into such plain values by :func:`rng_state`.

Every checkpoint is self-contained for inference: beside the weights it carries an :class:`InferenceSpec`
(the model's configuration, the band order, the class names, the per-band normalisation of the train
pixels, the patch size and the sgc version), so :func:`load_model` needs neither the plan nor the store.
"""

from __future__ import annotations

import io
import pickle
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sgc.atomic import atomic_write
from sgc.config import ModelConfig
from sgc.errors import InputFileError, OutputFileError
from sgc.model.unet import UNet
from sgc.patches.planfile import band_scaling

INFERENCE_KEY = "inference"

# torch wraps the unpickler's complaint in advice this project must not follow (load unsafely), worded
# differently from one torch release to the next; what they share is the opening and the global named.
_REFUSED = re.compile(r"weights[ _]only", re.IGNORECASE)
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` so that a reader sees the old file or the new one, never half of one.

    Args:
        path: destination file; its folder is created if missing.
        state: tensors, numbers, strings, and dicts / lists of them.

    Returns:
        The path written.

    Raises:
        OutputFileError: if the file cannot be written (a full disk, say); a checkpoint already at
            ``path`` is kept as it was.
    """
    path = Path(path)
    # Serialised in memory first: torch's writer turns a failed write into an opaque RuntimeError, while
    # writing the bytes ourselves gives the OSError (a full disk, say) that says what happened.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        with atomic_write(path) as f:
            f.write(buffer.getbuffer())
    except OSError as exc:
        reason = exc.strerror or str(exc)
        kept = "the checkpoint there before is kept" if path.exists() else "nothing was written"
        raise OutputFileError(path, f"cannot be written ({reason}); {kept}") from exc
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the checkpoint file.
        map_location: where tensors are placed, as for :func:`torch.load`.

    Returns:
        The saved dict.

    Raises:
        InputFileError: the file is missing, truncated, corrupt, holds code or objects that ``weights_only``
            loading refuses, or does not hold a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "checkpoint file not found (or not a regular file)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # A damaged pickle stream can fail in the unpickler with almost any exception type, so every
        # failure is the file's fault; only the weights_only refusal gets its own wording.
        raise InputFileError(path, _load_failure_reason(exc)) from exc
    if not isinstance(state, dict):
        raise InputFileError(path, f"checkpoint holds a {type(state).__name__}, expected a dict")
    return state


@dataclass(frozen=True)
class InferenceSpec:
    """What applying a trained model to pixels needs, carried by every checkpoint.

    Attributes:
        model: the U-Net's configuration.
        bands: the input bands, in the order of the model's input channels.
        classes: the class names, in the order of its output channels.
        normalisation: per band, ``median`` and ``robust_sigma`` of the train pixels: the input is
            ``(x - median) / robust_sigma``.
        patch: the patch edge it was trained on.
        sgc_version: the sgc that trained it.
    """

    model: ModelConfig
    bands: tuple[str, ...]
    classes: tuple[str, ...]
    normalisation: dict[str, dict[str, float]]
    patch: int
    sgc_version: str

    def to_json(self) -> dict[str, Any]:
        """The spec as plain values, as a checkpoint holds it."""
        return {**asdict(self), "model": self.model.model_dump(mode="json")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InferenceSpec:
        """The spec from :meth:`to_json`'s values."""
        return cls(
            model=ModelConfig.model_validate(data["model"]),
            bands=tuple(data["bands"]),
            classes=tuple(data["classes"]),
            normalisation={b: {k: float(v) for k, v in s.items()} for b, s in data["normalisation"].items()},
            patch=int(data["patch"]),
            sgc_version=str(data["sgc_version"]),
        )

    def scaling(self) -> tuple[np.ndarray, np.ndarray]:
        """Per band ``(scale, offset)`` with ``x * scale + offset = (x - median) / robust_sigma``."""
        return band_scaling(self.normalisation, self.bands)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[UNet, InferenceSpec]:
    """The trained U-Net of a checkpoint, in eval mode, and what applying it needs.

    Raises:
        InputFileError: the file is not a checkpoint (see :func:`load_checkpoint`), or one without the
            inference record or whose weights do not fit its model configuration.
    """
    checkpoint = load_checkpoint(path, map_location)
    if INFERENCE_KEY not in checkpoint or "model" not in checkpoint:
        raise InputFileError(path, "checkpoint holds no inference record (made by an older sgc: train again)")
    try:
        spec = InferenceSpec.from_json(checkpoint[INFERENCE_KEY])
        model = UNet(spec.model, in_channels=len(spec.bands), classes=len(spec.classes))
        model.load_state_dict(checkpoint["model"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise InputFileError(path, f"checkpoint's inference record or weights do not fit ({exc})") from exc
    return model.to(map_location).eval(), spec


def _load_failure_reason(exc: Exception) -> str:
    """Words for why torch.load failed, without torch's advice to retry with weights_only=False."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and _REFUSED.search(text):
        named = _GLOBAL.search(text)
        what = f" ({named.group(1)})" if named else ""
        return (
            f"holds Python code or objects{what}, not only weights: it was not loaded, since loading it "
            "would run code from the file (sgc's checkpoints hold only tensors and plain values)"
        )
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    return f"checkpoint is truncated or corrupt ({type(exc).__name__}: {first_line})"


def rng_state() -> dict[str, Any]:
    """The state of every random generator training draws from, as plain values.

    Returns:
        A dict with keys ``python``, ``numpy``, ``torch`` and ``cuda`` (a list, empty without CUDA), that
        survives :func:`save_checkpoint` / :func:`load_checkpoint` and is restored by :func:`set_rng_state`.
    """
    version, internal, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=False)
    return {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            # uint32 keys widen losslessly to int64, a dtype every torch build stores.
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators from a dict made by :func:`rng_state`.

    CUDA states are restored for the devices present; a checkpoint from a machine with more GPUs restores
    only the first ones, and one from a machine without CUDA leaves CUDA generators as they are.
    """
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["internal"]), py["gauss_next"]))
    npst = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npst["bit_generator"],
            "state": {"key": npst["key"].cpu().numpy().astype(np.uint32), "pos": int(npst["pos"])},
            "has_gauss": int(npst["has_gauss"]),
            "gauss": float(npst["gauss"]),
        }
    )
    # set_rng_state wants a CPU ByteTensor whatever map_location the checkpoint was loaded with.
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), device=index)
