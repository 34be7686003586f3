"""Configuration: the one definition of every setting, its default, its allowed values and its rules.

A config file holds one :class:`RunConfig`. Its sections are what the library functions take: the
labelling stage takes a :class:`LabelConfig`, the loader a :class:`LoaderConfig`, and so on; there are no
second copies of these settings. Every rule that ties two settings together is a validator here, so a bad
config is refused when it is loaded, naming the key, before any stage runs.

Any field can be overridden with ``--set dotted.key=value`` (``--set simulate.fields=8``); values are
parsed as YAML scalars, so ``true``, ``3`` and ``[a, b]`` work. ``RunConfig()``, ``load_config(None)``
and a YAML file holding only ``name`` are the same config: the documented defaults below, which are for
real SDSS data (the canonical test field held out, the full-size U-Net). The offline demo's smaller
settings live in ``configs/demo.yaml``.

:class:`RunPaths` computes every path a run reads or writes, here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sgc.atomic import atomic_write
from sgc.errors import SgcError
from sgc.sdss.names import DEFAULT_BASE_URL, FieldId
from sgc.windows import round_up

CANONICAL_TEST_FIELD = "008162-6-0080"

Source = Literal["simulate", "sdss", "local"]
Codec = Literal["blosc-lz4", "blosc-zstd", "zstd", "none"]
ImageDtype = Literal["float32", "float16"]
AlignMethod = Literal["stars", "wcs"]
LabelMode = Literal["disk", "point"]
SplitMode = Literal["auto", "fields", "rows"]
Norm = Literal["batch", "group", "instance", "none"]
LossKind = Literal["ce", "ce+dice", "ce+focal"]
ClassWeights = Literal["inverse", "sqrt-inverse", "none"]
Schedule = Literal["cosine", "onecycle", "constant"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Device = Literal["auto", "cpu", "cuda"]

NORMS: tuple[str, ...] = get_args(Norm)
LOSS_KINDS: tuple[str, ...] = get_args(LossKind)
CLASS_WEIGHTS: tuple[str, ...] = get_args(ClassWeights)


class ConfigError(SgcError, ValueError):
    """A config file or override that does not describe a valid run."""


class _Strict(BaseModel):
    # A misspelt key in YAML must fail loudly rather than be ignored; sections are values, never edited
    # in place (a stage that needs other settings makes a changed copy).
    model_config = ConfigDict(extra="forbid", frozen=True)


def _field_ids(values: list[str]) -> list[str]:
    return [str(FieldId.parse(str(v))) for v in values]


class SimulateConfig(_Strict):
    """How many simulated fields to write, and from which seed (``source: simulate``)."""

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

    _normalise_fields = field_validator("fields")(_field_ids)


class ComputeConfig(_Strict):
    """Where every Dask stage runs (ingest, stats, label, exclude, split, audit, predict on CPU): one client
    per run."""

    workers: int = Field(
        2, ge=0, description="local worker processes (ignored with a scheduler); 0: threads in this process"
    )
    scheduler: str | None = Field(None, description="address of a running dask.distributed scheduler")


class IngestConfig(_Strict):
    """How frames become the aligned five-band cube store; the layout is set when a store is created."""

    fields: list[str] = Field(default_factory=list, description="field ids to ingest; empty means all found")
    strict: bool = Field(False, description="fail the run at the first bad field instead of skipping it")
    chunk: int = Field(256, ge=1, description="chunk edge in pixels along y and x")
    codec: Codec = Field(
        "none",
        description="compression of the image chunks (noisy floats barely compress; raw reads fastest)",
    )
    clevel: int = Field(5, ge=0, le=9, description="compression level")
    dtype: ImageDtype = Field("float32", description="dtype of the stored image")
    align_method: AlignMethod = Field(
        "stars", description="'wcs': resample from the WCS alone; 'stars': refine the WCS with the stars"
    )
    min_valid_fraction: float = Field(
        0.5, ge=0, le=1, description="warn about a stored field with fewer pixels valid in all five bands"
    )

    _normalise_fields = field_validator("fields")(_field_ids)


class LabelConfig(_Strict):
    """How catalogue objects are painted into per-pixel labels (``sgc label``).

    On the real sample (seeing 1.2", no ``PSF_FWHM`` in its catalogue, so 1.4" assumed: 3.5 px) a star
    disk of one FWHM holds every pixel ring whose mean is 3 sigma above sky for 79% of the stars, disk and
    ring together for 91%; the default galaxy radius of 1.6" (4 px) holds the 3-sigma core of 93% of the
    galaxies, 97% with the ring.
    """

    mode: LabelMode = Field("disk", description="'disk', or 'point' (one pixel, as in 2023)")
    star_radius_fwhm: float = Field(1.0, gt=0, description="star disk radius in units of the r PSF FWHM")
    default_psf_fwhm_arcsec: float = Field(1.4, gt=0, description="r PSF FWHM where the catalogue has none")
    galaxy_radius_fwhm: float = Field(1.0, gt=0, description="galaxy radius in units of its r moment FWHM")
    default_galaxy_radius_arcsec: float = Field(1.6, gt=0, description="galaxy radius without a moment")
    # sqrt(0.5) keeps the pixel nearest each centre inside its disk.
    min_radius_px: float = Field(1.0, ge=math.sqrt(0.5), description="smallest disk radius in pixels")
    max_radius_px: float = Field(20.0, gt=0, description="largest disk radius in pixels")
    ignore_ring_px: float = Field(2.0, ge=0, description="width of the ignore ring around every disk")

    @model_validator(mode="after")
    def _radii_ordered(self) -> LabelConfig:
        if self.min_radius_px > self.max_radius_px:
            raise ValueError(
                f"label.min_radius_px ({self.min_radius_px}) is larger than label.max_radius_px "
                f"({self.max_radius_px})"
            )
        return self


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
    mode: SplitMode = Field(
        "auto", description="'fields': split by field lists; 'rows': one field cut in row bands; 'auto'"
    )
    train_fields: list[str] = Field(default_factory=list, description="train fields; empty: all others")
    val_fields: list[str] = Field(default_factory=list, description="validation fields; empty: drawn")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="share of non-test fields drawn for validation")
    row_fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="train, val, test shares of the rows in 'rows' mode"
    )
    guard: int = Field(64, ge=0, description="rows left out between row bands")
    folds: int = Field(
        0, ge=0, description="'rows' mode in K equal bands, one of them the test band (sgc cv); 0: off"
    )
    fold: int = Field(0, ge=0, description="which of the `folds` bands is the test band, from row 0")

    _normalise_fields = field_validator("train_fields", "val_fields")(_field_ids)

    @field_validator("row_fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) < 0 or value[0] == 0 or abs(sum(value) - 1) > 1e-6:
            raise ValueError(
                f"{list(value)}: three shares (train, val, test), none negative, train above 0, summing to 1"
            )
        return value

    @model_validator(mode="after")
    def _fields_in_one_split(self) -> SplitConfig:
        twice = sorted(set(self.train_fields) & set(self.val_fields))
        if twice:
            raise ValueError(f"split.train_fields and split.val_fields both list {', '.join(twice)}")
        if self.folds == 1 or (self.folds and self.fold >= self.folds):
            raise ValueError(
                f"split.folds ({self.folds}) and split.fold ({self.fold}): at least 2 folds, the fold "
                "counted from 0 below them"
            )
        if self.folds == 2 and self.row_fractions[1] > 0:
            raise ValueError(
                "split.folds 2 leaves no train band beside the test and validation bands: give 3 folds or "
                "more, or no validation share (split.row_fractions [x, 0, y])"
            )
        if self.folds and self.mode == "fields":
            raise ValueError(
                "split.folds cuts one field into bands of rows: it needs split.mode rows or auto"
            )
        return self


class LoaderConfig(_Strict):
    """How patches stream from the store into the model (``sgc train``)."""

    batch_size: int = Field(32, ge=1, description="patches per batch on each rank")
    workers: int = Field(1, ge=0, description="DataLoader worker processes per rank (0: in the trainer)")
    buffer_blocks: int = Field(
        2, ge=1, description="blocks (one field's rows each) mixed in the shuffle buffer of each worker"
    )
    max_block_rows: int = Field(8, ge=1, description="most chunk rows read as one block")
    augment: bool = Field(True, description="random flips and right-angle rotations (the eight symmetries)")
    noise: float = Field(
        0.0, ge=0, description="sigma of Gaussian noise added, in units of each band's sky noise"
    )
    gain_jitter: float = Field(0.0, ge=0, description="sigma of a random per-band gain, as a fraction")
    oversample: int = Field(
        1, ge=1, description="times each train patch holding star or galaxy pixels is seen per epoch"
    )

    def plain(self) -> LoaderConfig:
        """The same batching with no augmentation, noise, jitter or oversampling: for scoring."""
        return self.model_copy(update={"augment": False, "noise": 0.0, "gain_jitter": 0.0, "oversample": 1})


class ModelConfig(_Strict):
    """The U-Net (``sgc.model.unet``)."""

    depth: int = Field(4, ge=1, le=6, description="down-sampling steps")
    width: int = Field(32, ge=4, description="channels of the first level; doubled at each step")
    norm: Norm = Field("batch", description="normalisation layers")
    softening: float = Field(
        3.0, gt=0, description="asinh stretch of the input: linear within this many sky sigmas, log beyond"
    )

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side that an output pixel of the U-Net can depend on (an upper bound, measured
        against the network in the tests).

        Level ``l`` works at ``2**l`` pixels per step. Each 3x3 convolution reaches one step: two per level on
        the way down (``depth + 1`` levels, the bottleneck included) and two per level on the way up; each 2x2
        pooling reaches one more step of its finer level, and each 2x2 transposed convolution's output pixel
        sits up to one step of its finer level away from the coarse pixel it comes from.
        """
        levels = range(self.depth)
        return sum(2 * 2**level for level in range(self.depth + 1)) + sum(4 * 2**level for level in levels)

    @property
    def halo(self) -> int:
        """The receptive radius rounded up to a multiple of ``2**depth``: the border a tile must drop for
        tiled inference to equal whole-image inference."""
        return round_up(self.receptive_radius, 2**self.depth)


class LossConfig(_Strict):
    """The training loss (``sgc.model.losses``)."""

    kind: LossKind = Field("ce+dice", description="cross entropy, plus Dice or focal")
    class_weights: ClassWeights = Field(
        "sqrt-inverse", description="cross-entropy class weights from the train label frequencies"
    )
    aux_weight: float = Field(1.0, ge=0, description="weight of the Dice or focal term")
    focal_gamma: float = Field(2.0, ge=0, description="focusing exponent of the focal term")


class TrainConfig(_Strict):
    """Training (``sgc train``): optimiser, schedule, epochs, checkpoints."""

    epochs: int = Field(30, ge=1, description="maximum epochs")
    lr: float = Field(2e-3, gt=0, description="peak learning rate of AdamW")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    schedule: Schedule = Field("onecycle", description="learning-rate schedule")
    warmup: float = Field(
        0.1, ge=0, lt=1, description="share of the steps spent warming up (cosine, onecycle)"
    )
    clip: float = Field(1.0, ge=0, description="gradient-norm clipping; 0 turns it off")
    precision: Precision = Field(
        "auto",
        description="autocast dtype: 'auto' is bf16 on a GPU that supports it and fp32 elsewhere (bf16 on a "
        "CPU without native bf16 is many times slower); fp16 adds a gradient scaler",
    )
    channels_last: bool | Literal["auto"] = Field(
        "auto",
        description="NHWC memory format for the model and its batches (same maths): 'auto' is on a GPU only "
        "(on these CPUs it slowed the default model's training step 1.4x while speeding inference 1.6x)",
    )
    compile: bool = Field(
        False, description="torch.compile the model (inductor; needs a C++ compiler on CPU); same maths"
    )
    patience: int = Field(
        8, ge=0, description="epochs without a better validation F1 before stopping; 0: never"
    )
    seed: int = Field(0, ge=0, description="seed of the weights, the data order and the augmentation")
    device: Device = Field("auto", description="'auto': CUDA when present")
    max_steps: int = Field(0, ge=0, description="stop each epoch after this many steps; 0: the whole epoch")
    init: Path | None = Field(
        None, description="a checkpoint of the same model whose weights training starts from (fine-tuning)"
    )
    loader: LoaderConfig = Field(default_factory=LoaderConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)

    @model_validator(mode="before")
    @classmethod
    def _legacy_amp(cls, data: Any) -> Any:
        # Configs and checkpoints written before `precision` name it `amp` (auto, bf16, off).
        if isinstance(data, dict) and "amp" in data:
            data = dict(data)
            amp = data.pop("amp")
            data.setdefault("precision", "fp32" if amp == "off" else amp)
        return data


Split = Literal["train", "val", "test"]


class PredictConfig(_Strict):
    """Full-frame inference (``sgc predict``): stitched tiles, and the catalogue of predicted objects."""

    fields: list[str] = Field(
        default_factory=list, description="fields to predict; empty: the fields of `splits` in the plan"
    )
    splits: list[Split] = Field(
        default_factory=lambda: ["test"],
        description="the plan's splits whose fields sgc run predicts; empty: every field of the store",
    )
    tile: int = Field(
        768, ge=16, description="largest tile edge in one forward pass, pixels (rounded to 2**depth)"
    )
    halo: int | None = Field(
        None, ge=0, description="pixels of each tile's cut edges left out; empty: the receptive radius"
    )
    batch: int = Field(4, ge=1, description="tiles per forward pass")
    symmetries: Literal[1, 2, 4, 8] = Field(
        1, description="test-time augmentation: probabilities averaged over this many flips and transposes"
    )
    device: Device = Field("auto", description="'auto': CUDA when present (whole fields in large batches)")
    precision: Precision = Field(
        "auto", description="autocast dtype of the forward pass: 'auto' is bf16 on a GPU that supports it"
    )
    channels_last: bool = Field(True, description="NHWC memory format for the model and its tiles")
    compile: bool = Field(False, description="torch.compile the model (each Dask worker compiles its own)")
    fits: bool = Field(False, description="also write a FITS class map and probability cube per field")
    min_area: int = Field(3, ge=1, description="smallest predicted object kept in the catalogue, pixels")

    _normalise_fields = field_validator("fields")(_field_ids)


class EvaluateConfig(_Strict):
    """Scoring against the catalogue (``sgc evaluate``); the metrics themselves are defined once, in
    :mod:`sgc.evaluate.metrics`."""

    split: Split = Field("test", description="the plan split sgc run scores")
    rows: tuple[int, int] | None = Field(
        None,
        description="score rows [first, end) of the stored grid instead of a split (a field's own frames)",
    )


class BaselinesConfig(_Strict):
    """What sgc run puts beside its model in the report: the 2023 recipe and a classical cut."""

    reference: Path | None = Field(
        None, description="a recipe (configs/reference2023.yaml) trained on the run's data; empty: none"
    )
    reference_set: list[str] = Field(
        default_factory=list, description="dotted.key=value overrides of the recipe (train.epochs=4)"
    )
    classical: bool = Field(True, description="source detection and a concentration cut (sep)")


class PretrainConfig(_Strict):
    """Pretraining on simulated fields, whose truth catalogues label every pixel (``sgc run``'s
    ``pretrain`` stage): the run's model starts from the weights trained on them."""

    config: Path | None = Field(
        None, description="the simulated run to pretrain on (configs/pretrain.yaml); empty: no pretraining"
    )
    set: list[str] = Field(
        default_factory=list, description="dotted.key=value overrides of that config (simulate.fields=8)"
    )


class ExplainConfig(_Strict):
    """Grad-CAM maps (``sgc explain``)."""

    patches: int = Field(3, ge=0, description="test patches (those with most objects) shown in the report")
    field: str | None = Field(None, description="explain a region of this field instead of test patches")
    box: tuple[int, int, int, int] | None = Field(
        None, description="the region of `field`: first row, end row, first column, end column"
    )

    @model_validator(mode="after")
    def _box_with_field(self) -> ExplainConfig:
        if (self.field is None) != (self.box is None):
            raise ValueError("explain.field and explain.box go together")
        if self.box is not None and not (0 <= self.box[0] < self.box[1] and 0 <= self.box[2] < self.box[3]):
            raise ValueError(f"explain.box {list(self.box)}: first row < end row, first column < end column")
        return self


class RunConfig(_Strict):
    """The whole job that ``sgc run`` carries out.

    Attributes:
        name: the run's name; outputs go to ``workdir/name`` and ``runs_dir/name``.
        workdir: parent folder of the data outputs (git-ignored ``stores/`` by default).
        runs_dir: parent folder of training runs (git-ignored ``runs/`` by default).
        source: where raw data come from: ``simulate`` (offline: simulate a SAS mirror, serve it on
            localhost and download from it), ``sdss`` (download from ``download.base_url``) or
            ``local`` (use ``raw_dir`` as it is).
        raw_dir: folder of raw frames and catalogues; defaults to ``workdir/name/raw``.
        catalogs: catalogue files or folders for labels, statistics and scores; empty means the
            catalogues found below the raw folder.
        test_fields: held-out fields whose sky is never trained or validated on.
    """

    name: str = "sgc"
    workdir: Path = Path("stores")
    runs_dir: Path = Path("runs")
    source: Source = "local"
    raw_dir: Path | None = None
    catalogs: list[Path] = Field(default_factory=list)
    test_fields: list[str] = Field(default_factory=lambda: [CANONICAL_TEST_FIELD])
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    download: DownloadConfig = Field(default_factory=DownloadConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    label: LabelConfig = Field(default_factory=LabelConfig)
    exclude: ExcludeConfig = Field(default_factory=ExcludeConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)

    _normalise_test_fields = field_validator("test_fields")(_field_ids)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or "/" in value or value.startswith("."):
            raise ValueError(f"name {value!r} must be a plain folder name")
        return value

    @model_validator(mode="after")
    def _sections_agree(self) -> RunConfig:
        """The rules that tie one section to another."""
        split = self.split
        for key in ("train_fields", "val_fields"):
            held = sorted(set(getattr(split, key)) & set(self.test_fields))
            if held:
                raise ValueError(f"split.{key} lists the held-out test field(s) {', '.join(held)}")
        step = 2**self.train.model.depth
        if split.patch % step:
            raise ValueError(
                f"split.patch ({split.patch}) must be a multiple of 2**train.model.depth ({step}): the "
                "U-Net halves the patch that many times"
            )
        if split.patch > self.ingest.chunk:
            raise ValueError(
                f"split.patch ({split.patch}) is larger than ingest.chunk ({self.ingest.chunk}): the "
                "loader cuts patches from at most four neighbouring chunks"
            )
        if self.source == "sdss" and not self.download.fields:
            raise ValueError("source 'sdss' needs download.fields: the field ids to fetch")
        splits = self.predict.splits
        if self.evaluate.rows is None and splits and self.evaluate.split not in splits:
            raise ValueError(
                f"evaluate.split ({self.evaluate.split}) is not among predict.splits "
                f"({', '.join(self.predict.splits)}): its fields would not be predicted"
            )
        halo = self.train.model.halo if self.predict.halo is None else self.predict.halo
        if self.predict.tile < 2 * halo + step:
            raise ValueError(
                f"predict.tile ({self.predict.tile}) leaves no inside to a tile: it must be at least twice "
                f"the halo ({halo} px, train.model.depth {self.train.model.depth}) plus {step}"
            )
        return self

    @property
    def paths(self) -> RunPaths:
        """Every path of this run."""
        return RunPaths.build(self.workdir / f"{self.name}.zarr", self.workdir / self.name, self)

    def paths_for_store(self, store: str | Path) -> RunPaths:
        """The paths of a run around an existing store: its outputs go beside it, as ``sgc run``'s do."""
        store = Path(store)
        stem = store.name.removesuffix(".zarr")
        out_dir = store.with_name(stem if stem != store.name else f"{stem}.out")
        return RunPaths.build(store, out_dir, self.model_copy(update={"name": stem or self.name}))


@dataclass(frozen=True)
class RunPaths:
    """Every path a run reads or writes.

    Attributes:
        store: the cube store (``workdir/NAME.zarr``).
        out_dir: the folder of every other data output (``workdir/NAME``).
        raw: raw frames and catalogues (``raw_dir``, else ``out_dir/raw``).
        mirror: the simulated SAS mirror (``source: simulate``).
        stats: statistics and cube figures.
        plan: the patch plan.
        stages: one JSON record per completed stage, which ``sgc run`` reads to skip what is complete.
        fold_stages: the records of the stages from the split on (``stages`` unless a fold of ``sgc cv``).
        run: the training run's folder (``runs_dir/NAME``): checkpoints, metrics, TensorBoard events.
        checkpoint: the model that is predicted with (``run/best.pt``).
        predictions: the prediction store, with the predicted objects beside it.
        evaluation: one folder of metrics per method scored (sgc, the 2023 recipe, the classical cut).
        explain: Grad-CAM maps.
        report: the static HTML report and its figures.
    """

    store: Path
    out_dir: Path
    raw: Path
    mirror: Path
    stats: Path
    plan: Path
    stages: Path
    fold_stages: Path
    run: Path
    checkpoint: Path
    predictions: Path
    evaluation: Path
    explain: Path
    report: Path

    @classmethod
    def build(cls, store: Path, out_dir: Path, cfg: RunConfig) -> RunPaths:
        """The paths of a run whose store and output folder are these.

        A fold of ``sgc cv`` (``split.folds`` set) shares the store and everything made before the split
        with the other folds; its plan, training run and everything after them go to a folder of its own,
        ``out_dir/cv/fold-K-of-N`` (and ``runs_dir/NAME/cv/fold-K-of-N``), records of those stages included.
        """
        folded, run = out_dir, cfg.runs_dir / cfg.name
        if cfg.split.folds:
            name = fold_name(cfg.split.fold, cfg.split.folds)
            folded, run = cv_dir(out_dir) / name, run / CV_FOLDER / name
        return cls(
            store=store,
            out_dir=out_dir,
            raw=cfg.raw_dir if cfg.raw_dir is not None else out_dir / "raw",
            mirror=out_dir / "mirror",
            stats=out_dir / "stats",
            plan=folded / "plan.zarr",
            stages=out_dir / "stages",
            fold_stages=folded / "stages",
            run=run,
            checkpoint=run / "best.pt",
            predictions=folded / "predictions",
            evaluation=folded / "evaluate",
            explain=folded / "explain",
            report=folded / "report",
        )

    @property
    def plan_report(self) -> Path:
        """The split report, beside the plan (``PLAN-report/``)."""
        return self.plan.with_name(f"{self.plan.stem}-report")


CV_FOLDER = "cv"


def cv_dir(out_dir: Path) -> Path:
    """Where ``sgc cv`` writes its folds and their summary, beside a run's other outputs."""
    return out_dir / CV_FOLDER


def fold_name(fold: int, folds: int) -> str:
    """The folder name of one fold: ``fold-K-of-N``, counted from 0."""
    return f"fold-{fold}-of-{folds}"


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


def merge_settings(base: dict[str, Any], changes: dict[str, Any], given_only: bool = False) -> dict[str, Any]:
    """``base`` with ``changes`` merged in, section by section (neither is modified).

    Args:
        base: settings as plain data.
        changes: settings to put over them, nested the same way.
        given_only: skip the values that are None, as command options not given are.
    """
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict):
            merged[key] = merge_settings(base.get(key) or {}, value, given_only)
        elif value is not None or not given_only:
            merged[key] = value
    return merged


def validate_config(data: dict[str, Any], source: str) -> RunConfig:
    """A :class:`RunConfig` from plain data, every problem named by its dotted key.

    Raises:
        ConfigError: ``source: invalid config: key: what is wrong; ...``.
    """
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"{source}: invalid config: {problems}") from exc


def _describe(err: Any) -> str:
    """One validation error as ``key: message``; a cross-section rule's message names its own keys."""
    where = ".".join(str(p) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where and not message.startswith(f"{where}.") else message


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML config file, as plain data (not yet validated).

    Raises:
        ConfigError: naming the file, if it is missing, not YAML, or not a mapping.
    """
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file does not exist") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a folder, not a config file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); a YAML config is UTF-8") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return loaded or {}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a :class:`RunConfig` from YAML (or the defaults) and apply command-line overrides.

    Args:
        path: a YAML file; ``None`` gives the documented defaults (``RunConfig()``).
        overrides: ``dotted.key=value`` strings, applied in order.

    Raises:
        ConfigError: naming the file and every invalid key.
    """
    data = load_config_file(path) if path is not None else {}
    return validate_config(
        apply_overrides(data, overrides or []), str(path) if path is not None else "defaults"
    )


def config_digest(model: BaseModel | Any) -> str:
    """Short stable hash of a config (or any JSON-able value): tells whether an output was made with it."""
    value = model.model_dump(mode="json") if isinstance(model, BaseModel) else model
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def saved_config(folder: str | Path, stage: str) -> Path:
    """Where the resolved config of ``stage`` is saved in ``folder``: ``sgc-{stage}.yaml``."""
    return Path(folder) / f"sgc-{stage}.yaml"


def save_config(model: BaseModel, folder: str | Path, stage: str) -> Path:
    """Write the resolved config of ``stage`` into ``folder`` (:func:`saved_config`) and return its path."""
    path = saved_config(folder, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", sync=False) as f:
        f.write(yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False))
    return path
