"""Configuration: pydantic models loaded from YAML, overridable on the command line, saved beside outputs.

A config file holds one :class:`RunConfig`. Any field can be overridden with ``--set dotted.key=value``
(``--set simulate.fields=8``); values are parsed as YAML scalars, so ``true``, ``3`` and ``[a, b]`` work.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sgc.atomic import atomic_write
from sgc.errors import SgcError
from sgc.sdss.names import DEFAULT_BASE_URL, FieldId

CANONICAL_TEST_FIELD = "008162-6-0080"
# The offline demo simulates fields 009001-3-0011.. (sgc.sdss.simulate's first run, camcol and field) and
# holds out the second, whose sky its two neighbours overlap by 128 rows: the canonical test field's sky is
# not simulated, so holding it out would exclude nothing there.
DEMO_TEST_FIELD = "009001-3-0012"
# The demo trains a small U-Net for a few epochs, so that `sgc run` finishes in minutes on a laptop CPU.
DEMO_TRAIN: dict[str, Any] = {"epochs": 4, "model": {"depth": 3, "width": 16}, "loader": {"batch_size": 16}}


class ConfigError(SgcError, ValueError):
    """A config file or override that does not describe a valid run."""


class _Strict(BaseModel):
    # A misspelt key in YAML must fail loudly rather than be ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SimulateConfig(_Strict):
    """How many simulated fields to write, and from which seed."""

    fields: int = Field(3, ge=1, description="number of consecutive fields to simulate")
    runs: int = Field(1, ge=1, description="number of imaging runs the fields are spread over")
    seed: int = Field(0, ge=0, description="random seed: the same seed writes the same bytes")


class DownloadConfig(_Strict):
    """Which fields to fetch, from where, and how hard to try."""

    fields: list[str] = Field(
        default_factory=list, description="field ids to fetch; empty means every simulated field"
    )
    base_url: str = Field(DEFAULT_BASE_URL, description="SAS base URL: https://, http:// or file://")
    jobs: int = Field(4, ge=1, description="parallel downloads")
    retries: int = Field(4, ge=0, description="retries per file on timeouts, dropped connections and 5xx")
    timeout: float = Field(60.0, gt=0, description="seconds without data before a request is retried")
    catalogs: bool = Field(True, description="also fetch the calibObj star and gal files of each run+camcol")

    @field_validator("fields")
    @classmethod
    def _normalise_fields(cls, value: list[str]) -> list[str]:
        return [str(FieldId.parse(str(v))) for v in value]


class IngestConfig(_Strict):
    """How frames become the aligned five-band cube store, and where the work runs."""

    fields: list[str] = Field(default_factory=list, description="field ids to ingest; empty means all found")
    workers: int = Field(2, ge=1, description="local worker processes (ignored with a scheduler)")
    scheduler: str | None = Field(None, description="address of a running dask.distributed scheduler")
    strict: bool = Field(False, description="fail the run at the first bad field instead of skipping it")
    chunk: int = Field(256, ge=16, description="chunk edge in pixels along y and x")
    codec: Literal["blosc-lz4", "blosc-zstd", "zstd", "none"] = Field(
        "none",
        description="compression of the image chunks (noisy floats barely compress; raw reads fastest)",
    )
    clevel: int = Field(5, ge=0, le=9, description="compression level")
    dtype: Literal["float32", "float16"] = Field("float32", description="dtype of the stored image")
    align_method: Literal["stars", "wcs"] = Field(
        "stars", description="'wcs': resample from the WCS alone; 'stars': refine the WCS with the stars"
    )

    @field_validator("fields")
    @classmethod
    def _normalise_fields(cls, value: list[str]) -> list[str]:
        return [str(FieldId.parse(str(v))) for v in value]


class LabelConfig(_Strict):
    """How catalogue objects are painted into per-pixel labels (``sgc label``)."""

    catalogs: list[Path] = Field(
        default_factory=list, description="catalogue files or folders; empty means those found in raw_dir"
    )
    mode: Literal["disk", "point"] = Field("disk", description="'disk', or 'point' (one pixel, as in 2023)")
    star_radius_fwhm: float = Field(1.0, gt=0, description="star disk radius in units of the r PSF FWHM")
    default_psf_fwhm_arcsec: float = Field(1.4, gt=0, description="r PSF FWHM where the catalogue has none")
    galaxy_radius_fwhm: float = Field(1.0, gt=0, description="galaxy radius in units of its r moment FWHM")
    default_galaxy_radius_arcsec: float = Field(1.6, gt=0, description="galaxy radius without a moment")
    min_radius_px: float = Field(1.0, ge=0.7072, description="smallest disk radius in pixels")
    max_radius_px: float = Field(20.0, gt=0, description="largest disk radius in pixels")
    ignore_ring_px: float = Field(2.0, ge=0, description="width of the ignore ring around every disk")


class ExcludeConfig(_Strict):
    """Where the held-out fields' footprints come from, and the margin around them (``sgc exclude``)."""

    margin_arcsec: float = Field(
        10.0, ge=0, description="sky beyond the held-out frames' edges also excluded"
    )
    footprint_sources: list[Path] = Field(
        default_factory=list,
        description="folders or files with the held-out fields' frames or .hdr headers; empty means raw_dir",
    )


class SplitConfig(_Strict):
    """The patch plan and its train / validation / test splits (``sgc split``)."""

    patch: int = Field(64, ge=1, description="patch edge in pixels")
    stride: int = Field(64, ge=1, description="step between patch origins in pixels")
    seed: int = Field(0, ge=0, description="seed of the validation draw")
    mode: Literal["auto", "fields", "rows"] = Field(
        "auto", description="'fields': split by field lists; 'rows': one field cut in row bands; 'auto'"
    )
    train_fields: list[str] = Field(default_factory=list, description="train fields; empty: all others")
    val_fields: list[str] = Field(default_factory=list, description="validation fields; empty: drawn")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="share of non-test fields drawn for validation")
    row_fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="train, val, test shares of the rows in 'rows' mode"
    )
    guard: int = Field(64, ge=0, description="rows left out between row bands")

    @field_validator("train_fields", "val_fields")
    @classmethod
    def _normalise_fields(cls, value: list[str]) -> list[str]:
        return [str(FieldId.parse(str(v))) for v in value]


class LoaderConfig(_Strict):
    """How patches stream from the store into the model (``sgc train``)."""

    batch_size: int = Field(32, ge=1, description="patches per batch on each rank")
    workers: int = Field(1, ge=0, description="DataLoader worker processes per rank (0: in the trainer)")
    buffer_blocks: int = Field(
        2, ge=1, description="blocks (one field's rows each) mixed in the shuffle buffer of each worker"
    )
    augment: bool = Field(True, description="random flips and right-angle rotations (the eight symmetries)")
    noise: float = Field(
        0.0, ge=0, description="sigma of Gaussian noise added, in units of each band's sky noise"
    )
    gain_jitter: float = Field(0.0, ge=0, description="sigma of a random per-band gain, as a fraction")
    oversample: int = Field(
        1, ge=1, description="times each train patch holding star or galaxy pixels is seen per epoch"
    )


class ModelConfig(_Strict):
    """The U-Net (``sgc.model.unet``)."""

    depth: int = Field(4, ge=1, le=6, description="down-sampling steps")
    width: int = Field(32, ge=4, description="channels of the first level; doubled at each step")
    norm: Literal["batch", "group", "instance", "none"] = Field("batch", description="normalisation layers")
    softening: float = Field(
        3.0, gt=0, description="asinh stretch of the input: linear within this many sky sigmas, log beyond"
    )


class LossConfig(_Strict):
    """The training loss (``sgc.model.losses``)."""

    kind: Literal["ce", "ce+dice", "ce+focal"] = Field(
        "ce+dice", description="cross entropy, plus Dice or focal"
    )
    class_weights: Literal["inverse", "sqrt-inverse", "none"] = Field(
        "sqrt-inverse", description="cross-entropy class weights from the train label frequencies"
    )
    aux_weight: float = Field(1.0, ge=0, description="weight of the Dice or focal term")
    focal_gamma: float = Field(2.0, ge=0, description="focusing exponent of the focal term")


class TrainConfig(_Strict):
    """Training (``sgc train``): optimiser, schedule, epochs, checkpoints."""

    epochs: int = Field(30, ge=1, description="maximum epochs")
    lr: float = Field(2e-3, gt=0, description="peak learning rate of AdamW")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    schedule: Literal["cosine", "onecycle", "constant"] = Field(
        "onecycle", description="learning-rate schedule"
    )
    warmup: float = Field(
        0.1, ge=0, lt=1, description="share of the steps spent warming up (cosine, onecycle)"
    )
    clip: float = Field(1.0, ge=0, description="gradient-norm clipping; 0 turns it off")
    amp: Literal["auto", "bf16", "off"] = Field(
        "auto", description="'auto': bf16 autocast where the GPU supports it"
    )
    patience: int = Field(
        8, ge=0, description="epochs without a better validation F1 before stopping; 0: never"
    )
    seed: int = Field(0, ge=0, description="seed of the weights, the data order and the augmentation")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto': CUDA when present")
    max_steps: int = Field(0, ge=0, description="stop each epoch after this many steps; 0: the whole epoch")
    loader: LoaderConfig = Field(default_factory=LoaderConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)


class RunConfig(_Strict):
    """The whole job that ``sgc run`` carries out.

    Attributes:
        name: the run's name; outputs go to ``workdir/name``.
        workdir: parent folder of the data outputs (git-ignored ``stores/`` by default).
        runs_dir: parent folder of training runs (git-ignored ``runs/`` by default).
        source: where raw data come from: ``simulate`` (offline: simulate a SAS mirror, serve it on
            localhost and download from it), ``sdss`` (download from ``download.base_url``) or
            ``local`` (use ``raw_dir`` as it is).
        raw_dir: folder of raw frames and catalogues; defaults to ``workdir/name/raw``.
        test_fields: held-out fields whose sky is never trained or validated on.
    """

    name: str = "demo"
    workdir: Path = Path("stores")
    runs_dir: Path = Path("runs")
    source: Literal["simulate", "sdss", "local"] = "simulate"
    raw_dir: Path | None = None
    test_fields: list[str] = Field(default_factory=lambda: [CANONICAL_TEST_FIELD])
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    download: DownloadConfig = Field(default_factory=DownloadConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    label: LabelConfig = Field(default_factory=LabelConfig)
    exclude: ExcludeConfig = Field(default_factory=ExcludeConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("test_fields")
    @classmethod
    def _normalise_test_fields(cls, value: list[str]) -> list[str]:
        return [str(FieldId.parse(str(v))) for v in value]

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or "/" in value or value.startswith("."):
            raise ValueError(f"name {value!r} must be a plain folder name")
        return value

    @property
    def out_dir(self) -> Path:
        """Folder that holds every output of this run."""
        return self.workdir / self.name

    @property
    def resolved_raw_dir(self) -> Path:
        """Folder of raw frames and catalogues."""
        return self.raw_dir if self.raw_dir is not None else self.out_dir / "raw"

    @property
    def store_path(self) -> Path:
        """The run's cube store."""
        return self.workdir / f"{self.name}.zarr"

    @property
    def plan_path(self) -> Path:
        """The run's patch plan."""
        return self.out_dir / "plan.zarr"

    @property
    def run_dir(self) -> Path:
        """The run's training outputs: checkpoints, metrics, TensorBoard events."""
        return self.runs_dir / self.name

    @property
    def mirror_dir(self) -> Path:
        """Folder of the simulated SAS mirror (``source: simulate``)."""
        return self.out_dir / "mirror"


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``dotted.key=value`` into the key path and a YAML-parsed value.

    Raises:
        ConfigError: if ``text`` has no ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like dotted.key=value, e.g. simulate.fields=8")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with every ``dotted.key=value`` override applied."""
    result = json.loads(json.dumps(data, default=str))
    for text in overrides:
        keys, value = parse_override(text)
        node = result
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = value
    return result


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a :class:`RunConfig` from YAML (or the defaults) and apply command-line overrides.

    Args:
        path: a YAML file; ``None`` gives the built-in defaults: the offline demo, which is what
            ``configs/demo.yaml`` spells out.
        overrides: ``dotted.key=value`` strings, applied in order.

    Raises:
        ConfigError: naming the file and every invalid key.
    """
    data: dict[str, Any] = {"test_fields": [DEMO_TEST_FIELD], "train": DEMO_TRAIN}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: config file does not exist") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
        data = loaded or {}
    data = apply_overrides(data, overrides or [])
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{source}: invalid config: {problems}") from exc


def config_digest(model: BaseModel) -> str:
    """Short stable hash of a config, to tell whether an output was made with it."""
    text = json.dumps(model.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_config(model: BaseModel, folder: str | Path, stage: str) -> Path:
    """Write the resolved config of ``stage`` as ``folder/sgc-{stage}.yaml`` and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sgc-{stage}.yaml"
    with atomic_write(path, "w", sync=False) as f:
        f.write(yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False))
    return path
