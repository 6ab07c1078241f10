"""Model factories: presets / configs / dicts + overrides → a model (docs/design.md "Public surface").

>>> from semgen_ray.models import build_model, build_autoencoder
>>> net = build_model("cpu-tiny", num_classes=4)              # width 8, torch head, C = 4
>>> net = build_model("paper", num_classes=44, norm="cont_bn")  # the reference YNet3D
>>> ae = build_autoencoder("cpu-tiny")                          # skip-less unless discovery.autoencoder=unet
>>> net2d = build_model("cpu-tiny", spatial_dims=2)              # the same U-Net in 2D (N C X Y inputs)
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from semgen_ray.config.schema import ConfigError, ModelConfig, SemGenConfig
from semgen_ray.models.autoencoder import AutoEncoder, AutoEncoder3D
from semgen_ray.models.unet import UNet
from semgen_ray.models.unet3d import UNet3D

MODELS: dict[str, type[UNet]] = {"UNet3D": UNet3D, "AutoEncoder3D": AutoEncoder3D, "UNet": UNet,
                                 "AutoEncoder": AutoEncoder}
"""Model classes by the name written to model cards (``architecture.class``)."""

_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
_CLASS_ARGS = ("skips", "upsample", "spatial_dims")
_3D = {UNet: UNet3D, AutoEncoder: AutoEncoder3D}


def _model_class(generic: type[UNet], extra: Mapping[str, Any]) -> type[UNet]:
    """The 3D-named class (the name 3D model cards carry) for 3D, else the generic one."""
    return _3D[generic] if extra.get("spatial_dims", 3) == 3 else generic


def _check_keys(keys, where: str) -> None:
    known = _FIELDS + _CLASS_ARGS
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"unknown model option {key!r} in {where}{hint}")


def resolve_config(preset_or_config: Any = None) -> tuple[ModelConfig, SemGenConfig | None]:
    """The :class:`ModelConfig` (and the whole config, when there is one) behind a model spec.

    Args:
        preset_or_config: ``None`` (the reference architecture, ``ModelConfig()``), a preset name
            (``paper``, ``cpu-tiny``) or YAML path (``semgen_ray.config.load_config``), a
            ``SemGenConfig``, a ``ModelConfig``, or a dict of ``ModelConfig`` fields.

    Raises:
        semgen_ray.config.ConfigError: unknown preset, unknown keys, invalid values.
    """
    if preset_or_config is None:
        return ModelConfig(), None
    if isinstance(preset_or_config, ModelConfig):
        return preset_or_config, None
    if isinstance(preset_or_config, SemGenConfig):
        return preset_or_config.model, preset_or_config
    if isinstance(preset_or_config, (str, Path)):
        from semgen_ray.config import load_config

        full = load_config(preset_or_config)
        return full.model, full
    if isinstance(preset_or_config, Mapping):
        _check_keys(preset_or_config, "the model dict")
        extra = [k for k in preset_or_config if k in _CLASS_ARGS]
        if extra:
            raise ConfigError(f"{extra} are builder arguments, not ModelConfig fields; pass them as keywords")
        return ModelConfig(**dict(preset_or_config)), None
    raise ConfigError(f"expected a preset name, a YAML path, a SemGenConfig, a ModelConfig or a dict, got "
                      f"{type(preset_or_config).__name__}")


def _apply(config: ModelConfig, overrides: Mapping[str, Any]) -> tuple[ModelConfig, dict]:
    _check_keys(overrides, "the overrides")
    fields = {k: v for k, v in overrides.items() if k in _FIELDS}
    extra = {k: v for k, v in overrides.items() if k in _CLASS_ARGS}
    return dataclasses.replace(config, **fields), extra


def build_model(preset_or_config: Any = None, **overrides: Any) -> UNet:
    """The U-Net (3D; 2D with ``spatial_dims=2``), with a head when ``num_classes`` is set (docs/method.md §4).

    Args:
        preset_or_config: see :func:`resolve_config`; ``None`` is the reference architecture
            (width 32, depth 4, batch norm, no head).
        **overrides: ``ModelConfig`` fields (``width=8``, ``norm="group"``, ``num_classes=44``,
            ``head=None | "torch" | "keras" | "linear"``, ``depth``, ``embed_dim``, …) and the builder arguments
            ``skips`` (default True), ``upsample`` (default ``transpose``) and ``spatial_dims``
            (default 3).

    Returns:
        A :class:`UNet3D` (for ``spatial_dims=2`` a 2D :class:`~semgen_ray.models.unet.UNet`) on the CPU
        in float32. A head is built when ``num_classes`` is not ``None``
        and ``head`` is not ``None``.

    Raises:
        semgen_ray.config.ConfigError: unknown option (with the closest name) or invalid value.
        ValueError: ``spatial_dims`` other than 2 or 3.

    Example:
        >>> build_model("paper", num_classes=44).num_classes
        44
    """
    config, _ = resolve_config(preset_or_config)
    config, extra = _apply(config, overrides)
    return _model_class(UNet, extra)(**dataclasses.asdict(config), **extra)


def build_autoencoder(preset_or_config: Any = None, *, skips: bool | None = None, **overrides: Any) -> AutoEncoder:
    """The self-discovery auto-encoder (docs/method.md §1.3) with the model config's width, depth and norm.

    Args:
        preset_or_config: as :func:`build_model`.
        skips: skip connections; ``None``: from ``discovery.autoencoder`` when a preset / full config
            is given (``unet`` → True, ``bottleneck`` → False), else False (the bottleneck default).
        **overrides: ``ModelConfig`` fields, ``upsample`` (default ``nearest``) and ``spatial_dims`` (default
            3; 2 builds a 2D :class:`~semgen_ray.models.autoencoder.AutoEncoder`). ``head`` and
            ``num_classes`` are ignored unless they ask for a head, which is an error.

    Raises:
        semgen_ray.config.ConfigError: unknown option or a head requested.
    """
    config, full = resolve_config(preset_or_config)
    config, extra = _apply(config, overrides)
    if overrides.get("num_classes") is not None:
        raise ConfigError("the auto-encoder has no classification head; drop num_classes")
    if skips is None:
        skips = extra.pop("skips", None)
    else:
        extra.pop("skips", None)
    if skips is None:
        skips = full is not None and full.discovery.autoencoder == "unet"
    args = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("head", "num_classes")}
    return _model_class(AutoEncoder, extra)(**args, skips=bool(skips), **extra)


def build_from_card(card: Mapping[str, Any]) -> UNet:
    """Rebuild the (untrained) model an exported model card describes (``card["architecture"]``).

    Raises:
        ValueError: the card names an unknown class or has no architecture section.
    """
    arch = card.get("architecture") if isinstance(card, Mapping) else None
    if not isinstance(arch, Mapping) or "class" not in arch or "config" not in arch:
        raise ValueError("model card has no 'architecture' with 'class' and 'config'")
    cls = MODELS.get(arch["class"])
    if cls is None:
        raise ValueError(f"model card names unknown class {arch['class']!r}; known: {sorted(MODELS)}")
    config = dict(arch["config"])
    _check_keys(config, "the model card")
    autoencoder = issubclass(cls, AutoEncoder)
    if autoencoder:
        config.pop("head", None)
        config.pop("num_classes", None)
    return cls(**config, skips=bool(arch.get("skips", not autoencoder)),
               upsample=arch.get("upsample", "nearest" if autoencoder else "transpose"),
               spatial_dims=arch.get("spatial_dims", 3))  # cards written before 2D support are 3D


def load_pretrained(path: str | Path, **load_kwargs: Any) -> UNet:
    """Build the model an export describes (its ``model_card.json``) and load its weights.

    Args:
        path: an export directory (``model_card.json`` + ``model.safetensors``) or its safetensors file.
        **load_kwargs: passed to :func:`semgen_ray.models.load_weights`.
    """
    from semgen_ray.models.weights import load_weights, read_card

    card = read_card(path)
    return load_weights(build_from_card(card), path, **load_kwargs)
