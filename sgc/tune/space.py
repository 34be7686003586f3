"""The search space of ``sgc tune``: dotted config keys and the distribution each is drawn from.

A config file cannot hold it (every section of :class:`~sgc.config.RunConfig` forbids unknown keys, so that
a misspelt setting fails loudly), so it is a YAML file of its own, ``--space FILE``, a mapping from a dotted
config key to its distribution::

    train.lr: {low: 3e-4, high: 1e-2, log: true}      # float, from the key's type
    train.loader.oversample: {low: 1, high: 4}        # int, from the key's type
    train.loss.kind: [ce, ce+dice, ce+focal]          # a list: one of these choices
    train.model.width: {choices: [8, 16, 32]}

A numeric entry takes ``low``, ``high`` and optionally ``log: true`` or ``step``; its type (``int`` or
``float``) is the config key's own unless ``type`` says otherwise. Everything is checked when the file is
read, against the run's config, so that a search never starts on a space it cannot draw from: the key must
be a setting of the config (not a section, nor one that ``sgc tune`` sets for each trial itself), each
bound and choice must be a value the key accepts, and the distribution must make sense (low below high, a
positive low for a log scale). Each problem is one :class:`SpaceError` naming the file and the key. Rules
that tie two settings together (``split.patch`` a multiple of ``2**train.model.depth``) are left to each
trial: a draw that breaks one fails that trial, with the config's message in the trials table.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import BaseModel, ValidationError

from sgc.config import RunConfig, merge_settings
from sgc.errors import SgcError


class SpaceError(SgcError, ValueError):
    """A search space that cannot be searched: the message names the file and the key."""


# Settings a search may not draw: sgc tune sets them for each trial (its name, folders, compute, the folds
# of its cross-validation), or they say what the data are rather than how to model them.
NOT_SEARCHED: Mapping[str, str] = {
    "name": "each trial gets its own name",
    "workdir": "each trial writes below the search's folder",
    "runs_dir": "each trial trains below the search's folder",
    "source": "the trials read the run's raw data",
    "raw_dir": "the trials read the run's raw data",
    "catalogs": "the catalogue is the truth every trial is scored against",
    "test_fields": "the held-out fields are the data, not a hyper-parameter",
    "compute": "each trial computes in its Dask worker",
    "simulate": "the trials share the run's data",
    "download": "the trials share the run's data",
    "split.folds": "the cross-validation sets it for each fold",
    "split.fold": "the cross-validation sets it for each fold",
    "split.mode": "the cross-validation cuts one field into bands of rows",
    "evaluate": "the cross-validation scores each fold on its whole test band",
    "baselines": "the objective decides which methods each trial scores",
    "explain": "a trial draws no Grad-CAM maps",
    "train.loader.workers": "a trial's Dask worker is a daemonic process, which starts no loader processes",
    "train.device": "the device is where a trial runs, not a hyper-parameter",
}

# The built-in space (for real data, around the defaults of configs/sample.yaml): how fast and with what
# loss the U-Net learns, how wide it is, how often objects are shown, and how large the star labels are.
DEFAULT_SPACE: Mapping[str, Any] = {
    "train.lr": {"low": 3e-4, "high": 1e-2, "log": True},
    "train.loss.kind": {"choices": ["ce", "ce+dice", "ce+focal"]},
    "train.model.width": {"choices": [8, 16, 32]},
    "train.loader.oversample": {"low": 1, "high": 4},
    "label.star_radius_fwhm": {"low": 0.6, "high": 1.5},
}

_ENTRY_KEYS = ("type", "low", "high", "log", "step", "choices")
_TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class SearchSpace:
    """A checked search space.

    Attributes:
        distributions: per dotted config key, its Optuna distribution (in the file's order).
        source: where it was read from (a file, or "the built-in space").
    """

    distributions: dict[str, BaseDistribution]
    source: str

    def to_data(self) -> dict[str, Any]:
        """The space in the file format, every field spelt out: what ``space.yaml`` records."""
        data: dict[str, Any] = {}
        for key, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                data[key] = {"choices": list(dist.choices)}
                continue
            assert isinstance(dist, (FloatDistribution, IntDistribution))
            entry: dict[str, Any] = {
                "type": "int" if isinstance(dist, IntDistribution) else "float",
                "low": dist.low,
                "high": dist.high,
            }
            if dist.log:
                entry["log"] = True
            if dist.step is not None and not (isinstance(dist, IntDistribution) and dist.step == 1):
                entry["step"] = dist.step
            data[key] = entry
        return data


def nested(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 0.01}`` as settings nested by section: ``{"train": {"lr": 0.01}}``."""
    result: dict[str, Any] = {}
    for key, value in params.items():
        *sections, leaf = key.split(".")
        node = result
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return result


def load_space(path: str | Path | None, cfg: RunConfig) -> SearchSpace:
    """Read and check a search space file, or the built-in space where ``path`` is None.

    Args:
        path: the YAML file.
        cfg: the run's config, whose keys and allowed values the space is checked against.

    Raises:
        SpaceError: naming the file (and the key), for a file that is missing or not YAML, a key that is
            not a searchable setting, or a distribution that is malformed or draws values the key refuses.
    """
    if path is None:
        return parse_space(DEFAULT_SPACE, "the built-in space", cfg)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise SpaceError(f"{path}: search space file does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{path}: cannot read the search space ({exc})") from exc
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise SpaceError(f"{path}: search space is not valid YAML ({reason})") from exc
    return parse_space(data, str(path), cfg)


def parse_space(data: Any, source: str, cfg: RunConfig) -> SearchSpace:
    """Check a search space given as plain data (the file's content) against ``cfg``.

    Raises:
        SpaceError: as :func:`load_space`.
    """
    if not isinstance(data, Mapping) or not data:
        raise SpaceError(
            f"{source}: expected a mapping of dotted config keys to distributions, such as "
            "'train.lr: {low: 3e-4, high: 1e-2, log: true}'"
        )
    base = cfg.model_dump(mode="json")
    distributions: dict[str, BaseDistribution] = {}
    for key, entry in data.items():
        where = f"{source}: {key}"
        if not isinstance(key, str):
            raise SpaceError(f"{where}: a key must be a dotted config key such as train.lr")
        annotation = _setting(key, where)
        dist = _distribution(entry, annotation, where)
        values = dist.choices if isinstance(dist, CategoricalDistribution) else (dist.low, dist.high)
        for value in values:
            _check_value(base, key, value, where)
        distributions[key] = dist
    return SearchSpace(distributions, source)


def _setting(key: str, where: str) -> Any:
    """The type annotation of the setting ``key`` names, once it is known to be one that may be searched."""
    parts = key.split(".")
    for depth in range(1, len(parts) + 1):
        reason = NOT_SEARCHED.get(".".join(parts[:depth]))
        if reason is not None:
            raise SpaceError(f"{where}: not searched by sgc tune ({reason})")
    model: type[BaseModel] = RunConfig
    annotation: Any = None
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            section = ".".join(parts[:depth]) or "the config"
            raise SpaceError(
                f"{where}: not a config key ({section} has no {part!r}; `sgc config` lists every key)"
            )
        annotation = fields[part].annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if depth < len(parts) - 1:
            if not is_section:
                raise SpaceError(f"{where}: not a config key ({'.'.join(parts[: depth + 1])} is a setting)")
            model = annotation
        elif is_section:
            raise SpaceError(f"{where}: is a section of the config; give one of its settings")
    return annotation


def _numeric_type(annotation: Any) -> str | None:
    """``int`` or ``float`` for a setting of that type (or that type or None), else None."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    return {int: "int", float: "float"}.get(annotation)


def _distribution(entry: Any, annotation: Any, where: str) -> BaseDistribution:
    """One entry of the file as an Optuna distribution."""
    if isinstance(entry, list):
        entry = {"choices": entry}
    if not isinstance(entry, Mapping):
        raise SpaceError(
            f"{where}: expected {{low: L, high: H}} (with log: true or step: S), {{choices: [...]}} or a "
            f"list of choices, not {entry!r}"
        )
    unknown = sorted(set(map(str, entry)) - set(_ENTRY_KEYS))
    if unknown:
        raise SpaceError(
            f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(_ENTRY_KEYS)})"
        )
    kind = entry.get("type")
    if kind is None:
        kind = "categorical" if "choices" in entry else _numeric_type(annotation)
        if kind is None:
            raise SpaceError(f"{where}: the setting is not a number: give its choices ({{choices: [...]}})")
    if kind not in _TYPES:
        raise SpaceError(f"{where}: type {kind!r} is not one of {', '.join(_TYPES)}")
    if kind == "categorical":
        return _categorical(entry, where)
    return _numeric(entry, kind, where)


def _categorical(entry: Mapping[str, Any], where: str) -> CategoricalDistribution:
    extra = sorted(set(entry) - {"type", "choices"})
    if extra:
        raise SpaceError(f"{where}: choices take no {', '.join(extra)}")
    choices = entry.get("choices")
    if not isinstance(choices, list) or not choices:
        raise SpaceError(f"{where}: choices must be a non-empty list")
    for choice in choices:
        # What Optuna can store in its journal and compare across processes.
        if choice is not None and not isinstance(choice, (bool, int, float, str)):
            raise SpaceError(f"{where}: choice {choice!r} is not a number, a string, a boolean or null")
    if len(set(map(repr, choices))) < len(choices):
        raise SpaceError(f"{where}: choices {choices} repeat a value")
    return CategoricalDistribution(choices)


def _number(entry: Mapping[str, Any], name: str, where: str) -> float:
    value = entry.get(name)
    if value is None:
        raise SpaceError(f"{where}: a numeric distribution needs low and high")
    # YAML reads 1e-3 (no decimal point) as a string: take it as the number it spells.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise SpaceError(f"{where}: {name} {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpaceError(f"{where}: {name} {value!r} is not a finite number")
    return float(value)


def _numeric(entry: Mapping[str, Any], kind: str, where: str) -> BaseDistribution:
    low, high = _number(entry, "low", where), _number(entry, "high", where)
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log must be true or false, not {log!r}")
    step = _number(entry, "step", where) if entry.get("step") is not None else None
    if not low < high:
        raise SpaceError(f"{where}: low ({low:g}) must be below high ({high:g})")
    if log and low <= 0:
        raise SpaceError(f"{where}: a log scale needs low above 0, not {low:g}")
    if log and step is not None:
        raise SpaceError(f"{where}: give log or step, not both")
    if step is not None and step <= 0:
        raise SpaceError(f"{where}: step must be above 0, not {step:g}")
    if kind == "float":
        return FloatDistribution(low, high, log=log, step=step)
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and not value.is_integer():
            raise SpaceError(f"{where}: {name} {value:g} is not a whole number (the setting is an int)")
    return IntDistribution(int(low), int(high), log=log, step=1 if step is None else int(step))


def _check_value(base: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Refuse a bound or choice that the setting itself does not accept (rules between settings are left to
    the trials, which may draw the other setting too)."""
    try:
        RunConfig.model_validate(merge_settings(base, nested({key: value})))
    except ValidationError as exc:
        parts = tuple(key.split("."))
        for err in exc.errors():
            if tuple(map(str, err["loc"]))[: len(parts)] == parts:
                message = err["msg"].removeprefix("Value error, ")
                raise SpaceError(f"{where}: {value!r} is not a value of this setting ({message})") from None
