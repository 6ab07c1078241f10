"""Weight export and the one loader (docs/method.md §7; docs/design.md "Artefact formats": Export).

**Export** (:func:`export_weights`) writes a directory::

    model.safetensors   the state dict (reference key names: down_tr64.ops.0.conv1.weight, …)
    model.pt            {"state_dict": …} (+ "epoch" when the card gives one), the same tensors, for
                        code written against the reference
    model_card.json     the contract: architecture arguments, input size, axis order (x, y, z; x, y in 2D),
                        intensity window, normalisation, class count, lineage, file hashes

**Loading** (:func:`load_weights`) accepts

* an export directory, or its ``.safetensors`` file;
* a training checkpoint: a torch file whose state dict is the whole file or sits under
  ``state_dict`` / ``model_state_dict`` / ``model`` / ``module`` (nested, e.g. DeepSpeed's
  ``mp_rank_00_model_states.pt`` = ``{"module": …}``); a checkpoint directory holding
  ``model.safetensors``, ``model.pt``, ``checkpoint.pt``, a DeepSpeed ``latest`` tag, or a single
  weights file; a Ray ``Checkpoint`` (anything with ``as_directory()``); an in-memory state dict;
* the official Models Genesis / Semantic Genesis / TransVW ``.pt`` files.

Torch files are read with ``torch.load(..., weights_only=True)``. Keys are normalised first: leading
``module.`` (DataParallel / DeepSpeed), ``_orig_mod.`` (torch.compile) and ``classficationNet.``
(sic, the released Semantic Genesis file) prefixes are stripped, and keys containing
``projection_head`` or ``prototypes`` (training-only modules of the released file, no part of any
network here) are dropped and reported.

**What strict means.** With ``strict=True`` (default) the normalised file must match the model
exactly: every model key present (a missing BatchNorm ``num_batches_tracked`` counter is tolerated),
no extra key, every shape equal; otherwise :class:`WeightsError` lists up to 10 missing, unexpected
and mismatched keys each, with a hint, and *nothing* is loaded. The head (``clc_out.*``) is part of
that contract: loading a file with a head into a model without one, a head-less file (Models
Genesis) into a model with one, or a head with another class count, fails unless
``ignore_head=True`` — then every ``clc_out.*`` key of the file is dropped (reported in
``LoadReport.dropped_head``) and the model's head, if any, keeps its current weights, while the
encoder and decoder stay strict. ``strict=False`` loads every key whose name and shape match and
warns with the same lists (never silently).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import warnings
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

CARD_NAME = "model_card.json"
SAFETENSORS_NAME = "model.safetensors"
TORCH_NAME = "model.pt"
CARD_FORMAT = "semgen_ray.model_card/1"

STRIP_PREFIXES = ("module.", "_orig_mod.", "classficationNet.")
"""Leading key prefixes removed before matching (DataParallel/DeepSpeed, torch.compile, released SG file)."""
DROP_MARKERS = ("projection_head", "prototypes")
"""Keys containing these are dropped (training-only modules of the released Semantic Genesis file)."""
HEAD_PREFIX = "clc_out."
"""Key prefix of the classification head (the reference ``YNet3D.clc_out``)."""
STATE_DICT_ENTRIES = ("state_dict", "model_state_dict", "model", "module")
"""Where a checkpoint dict may hold the state dict (searched in this order, recursively)."""
CHECKPOINT_FILES = (SAFETENSORS_NAME, TORCH_NAME, "checkpoint.pt", "model.pth", "checkpoint.pth")
_LIST = 10

DEFAULT_INTENSITY = {"modality": "CT", "unit": "HU", "window": [-1000.0, 1000.0], "range": [0.0, 1.0],
                     "mapping": "clip to window, then (v - lo) / (hi - lo)"}


class WeightsError(ValueError):
    """Weights do not fit the model, or a file is not a weights file; the message names the keys."""


@dataclasses.dataclass
class LoadReport:
    """What :func:`load_weights` did.

    Attributes:
        source: the file read.
        kind: ``safetensors`` or ``torch``.
        loaded: model keys that received a tensor.
        missing: model keys the file lacks (not loaded).
        unexpected: file keys the model lacks (not loaded).
        mismatched: ``(key, file shape, model shape)`` of keys with different shapes (not loaded).
        dropped: file keys dropped by rule (``projection_head`` / ``prototypes``).
        dropped_head: file head keys dropped because of ``ignore_head=True``.
        stripped: number of keys whose prefix was stripped.
        card: the export's model card, when there is one.
    """

    source: str
    kind: str
    loaded: list[str] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = dataclasses.field(default_factory=list)
    dropped: list[str] = dataclasses.field(default_factory=list)
    dropped_head: list[str] = dataclasses.field(default_factory=list)
    stripped: int = 0
    card: dict | None = None

    @property
    def exact(self) -> bool:
        """True when nothing was missing, unexpected or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self) -> str:
        """The offending keys, up to 10 of each kind, one list per line."""
        lines = []
        for title, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                more = f" … and {len(items) - _LIST} more" if len(items) > _LIST else ""
                lines.append(f"  {len(items)} {title} key(s): {', '.join(items[:_LIST])}{more}")
        if self.mismatched:
            shown = "; ".join(f"{k}: file {list(a)} vs model {list(b)}" for k, a, b in self.mismatched[:_LIST])
            more = f" … and {len(self.mismatched) - _LIST} more" if len(self.mismatched) > _LIST else ""
            lines.append(f"  {len(self.mismatched)} shape mismatch(es): {shown}{more}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- reading


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _find_state_dict(obj: Any, source: str, where: str = "") -> dict[str, torch.Tensor]:
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for entry in STATE_DICT_ENTRIES:
            if isinstance(obj.get(entry), Mapping):
                return _find_state_dict(obj[entry], source, f"{where}[{entry!r}]")
        keys = ", ".join(repr(k) for k in list(obj)[:_LIST])
        raise WeightsError(f"{source}{where}: no state dict found (a dict of tensors, or one under "
                           f"{'/'.join(STATE_DICT_ENTRIES)}); top-level keys: {keys}")
    raise WeightsError(f"{source}{where}: expected a state dict or a checkpoint dict, got {type(obj).__name__}")


def _resolve_dir(path: Path) -> Path:
    for name in CHECKPOINT_FILES:
        if (path / name).is_file():
            return path / name
    latest = path / "latest"
    if latest.is_file():  # DeepSpeed: <dir>/latest holds the tag; weights in <tag>/mp_rank_00_model_states.pt
        tagged = path / latest.read_text().strip() / "mp_rank_00_model_states.pt"
        if tagged.is_file():
            return tagged
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".safetensors", ".pt", ".pth", ".bin"))
    if len(found) == 1:
        return found[0]
    listing = ", ".join(p.name for p in sorted(path.iterdir())[:_LIST]) or "(empty)"
    raise WeightsError(f"{path}: cannot tell which file holds the weights (looked for {', '.join(CHECKPOINT_FILES)}, "
                       f"a DeepSpeed 'latest' tag, or a single .safetensors/.pt/.pth/.bin file); it holds: {listing}")


def read_card(path: str | Path) -> dict | None:
    """The model card of an export (directory or its ``.safetensors`` file), or ``None`` if it has none."""
    path = Path(path)
    card = path / CARD_NAME if path.is_dir() else path.with_name(CARD_NAME)
    if not card.is_file():
        return None
    try:
        return json.loads(card.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"{card}: not valid JSON: {err}") from err


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read the raw state dict of a weights file or checkpoint directory (no key normalisation).

    Returns:
        ``(state_dict, info)`` with ``info = {"source", "kind", "card"}``.

    Raises:
        FileNotFoundError: the path does not exist.
        WeightsError: the file holds no state dict or is not ``weights_only``-safe.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no weights at {path}")
    file = _resolve_dir(path) if path.is_dir() else path
    card = read_card(file) if file.suffix == ".safetensors" else None
    if file.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:  # pragma: no cover - safetensors is a pinned dependency
            raise ImportError("reading .safetensors needs the 'safetensors' package (pip install safetensors)") from err
        try:
            state = load_file(str(file), device="cpu")
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise WeightsError(f"{file}: not a readable safetensors file: {err}") from err
        return state, {"source": str(file), "kind": "safetensors", "card": card}
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling errors have many types
        raise WeightsError(
            f"{file}: cannot be read with torch.load(weights_only=True): {err}. Only tensors, dicts, lists "
            "and numbers are accepted; if you trust the file, torch.load it yourself and pass the state "
            "dict to load_weights") from err
    return _find_state_dict(obj, str(file)), {"source": str(file), "kind": "torch", "card": None}


def normalize_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], int]:
    """Strip ``module.`` / ``_orig_mod.`` / ``classficationNet.`` prefixes, drop projection/prototype keys.

    Returns:
        ``(state_dict, dropped keys, number of keys renamed)``.

    Raises:
        WeightsError: two keys collapse to the same name.
    """
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    dropped, renamed = [], 0
    for key, value in state.items():
        if any(marker in key for marker in DROP_MARKERS):
            dropped.append(key)
            continue
        new = key
        while new.startswith(STRIP_PREFIXES):
            new = new[len(next(p for p in STRIP_PREFIXES if new.startswith(p))):]
        renamed += new != key
        if new in out:
            raise WeightsError(f"keys {origin[new]!r} and {key!r} both map to {new!r} after stripping prefixes")
        out[new], origin[new] = value, key
    return out, dropped, renamed


# ---------------------------------------------------------------------------------------------- loading


def _hints(report: LoadReport, model: nn.Module) -> list[str]:
    hints = []
    head_unexpected = any(k.startswith(HEAD_PREFIX) for k in report.unexpected)
    head_missing = any(k.startswith(HEAD_PREFIX) for k in report.missing)
    head_shape = any(k.startswith(HEAD_PREFIX) for k, _, _ in report.mismatched)
    if head_unexpected and getattr(model, "clc_out", 1) is None:
        hints.append("the file has a classification head (clc_out.*) and the model has none: pass "
                     "ignore_head=True to drop it, or build the model with num_classes=C")
    elif head_missing or head_shape or head_unexpected:
        hints.append("the classification heads differ (absent, other kind or class count): pass "
                     "ignore_head=True to keep the model's own head and load the rest")
    stats = ("running_mean", "running_var")
    if any(k.endswith(stats) and not k.startswith(HEAD_PREFIX) for k in report.unexpected):
        hints.append("the file has BatchNorm running statistics: build the model with norm='batch' or 'cont_bn'")
    if any(k.endswith(stats) and not k.startswith(HEAD_PREFIX) for k in report.missing):
        hints.append("the model expects BatchNorm statistics the file lacks: build it with the file's norm "
                     "(group / instance)")
    # conv weights are (out, in, *kernel): 5-D in a 3D network, 4-D in a 2D one
    kernels = {(len(f) - 2, len(m) - 2) for _, f, m in report.mismatched
               if len(f) != len(m) and min(len(f), len(m)) >= 4}
    if kernels:
        file_dims, model_dims = sorted(kernels)[0]
        hints.append(f"the file holds a {file_dims}D network and the model is {model_dims}D: build it with "
                     f"spatial_dims={file_dims}")
    body = [k for k, _, _ in report.mismatched if not k.startswith(HEAD_PREFIX)]
    if body:
        hints.append("encoder/decoder shapes differ: check width, depth, in/out channels and embed_dim "
                     "against the file (an export's model_card.json lists them)")
    return hints


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DataParallel / DistributedDataParallel / DeepSpeed / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def load_weights(model: nn.Module, path: Any, strict: bool = True, *, ignore_head: bool = False,
                 return_report: bool = False):
    """Load an export, a training checkpoint or an official ``.pt`` file into ``model`` (docs/method.md §7).

    Args:
        model: the model to fill (its device and dtype are kept; tensors are cast on copy). A
            DataParallel / DDP / DeepSpeed / ``torch.compile`` wrapper is filled through to its network.
        path: a file, a directory (export or checkpoint), a Ray ``Checkpoint``, or a state dict.
        strict: require an exact match of keys and shapes (see the module docstring); False loads
            whatever matches by name and shape and warns about the rest.
        ignore_head: drop every ``clc_out.*`` key of the file and leave the model's head as it is
            (loading Models Genesis into a model with a head, or a pretrained head into a head-less
            model or one with another class count).
        return_report: also return the :class:`LoadReport`.

    Returns:
        ``model`` (and the report when ``return_report``).

    Raises:
        WeightsError: strict and the keys or shapes do not fit (the message names them), or the file
            holds no state dict.
        FileNotFoundError: no such path.

    Example:
        >>> model = build_model("paper")                                # doctest: +SKIP
        >>> load_weights(model, "Genesis_Chest_CT.pt")                   # doctest: +SKIP
        >>> load_weights(build_model("paper", num_classes=44), "semantic_genesis_chest_ct.pt")  # doctest: +SKIP
    """
    if hasattr(path, "as_directory") and not isinstance(path, (str, Path)):
        with path.as_directory() as directory:
            return load_weights(model, directory, strict, ignore_head=ignore_head, return_report=return_report)
    wrapper, model = model, _unwrap(model)
    if isinstance(path, Mapping):
        raw, info = _find_state_dict(path, "<state dict>"), {"source": "<state dict>", "kind": "memory", "card": None}
    else:
        raw, info = read_state_dict(path)
    state, dropped, stripped = normalize_keys(raw)
    report = LoadReport(source=info["source"], kind=info["kind"], dropped=dropped, stripped=stripped,
                        card=info["card"])
    if ignore_head:
        report.dropped_head = [k for k in state if k.startswith(HEAD_PREFIX)]
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}

    target = model.state_dict()
    for key, want in target.items():
        if ignore_head and key.startswith(HEAD_PREFIX):
            continue
        if key not in state:
            if not key.endswith("num_batches_tracked"):
                report.missing.append(key)
        elif tuple(state[key].shape) != tuple(want.shape):
            report.mismatched.append((key, tuple(state[key].shape), tuple(want.shape)))
        else:
            report.loaded.append(key)
    report.unexpected = [k for k in state if k not in target]

    if not report.exact:
        hints = "".join(f"\n  hint: {h}" for h in _hints(report, model))
        message = f"weights from {report.source} do not fit {type(model).__name__}:\n{report.problems()}{hints}"
        if strict:
            raise WeightsError(message + "\n  nothing was loaded (strict=True; strict=False loads the keys that fit)")
        warnings.warn(message + "\n  loaded the keys that fit (strict=False)", stacklevel=2)
    _warn_card(model, report.card)
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    return (wrapper, report) if return_report else wrapper


def _warn_card(model: nn.Module, card: dict | None) -> None:
    config = getattr(model, "config", None)
    if not card or config is None:
        return
    norm = card.get("normalisation")
    if norm and norm != getattr(config, "norm", norm):
        warnings.warn(f"weights were exported with norm={norm!r}, the model uses norm={config.norm!r}", stacklevel=3)


# ---------------------------------------------------------------------------------------------- export


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """JSON-ready data: dataclasses → dicts, tuples → lists, paths → strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise WeightsError(f"model card value {value!r} ({type(value).__name__}) is not JSON-serialisable")


def make_card(model: nn.Module, card: Mapping[str, Any] | None = None) -> dict:
    """The model card of ``model``: computed fields plus the caller's (input size, intensity, lineage, …).

    Args:
        model: a :class:`~semgen_ray.models.unet.UNet` (``UNet3D``, ``AutoEncoder3D``, … or a 2D one).
        card: caller fields. ``input_size`` (x, y, z; x, y for a 2D model) is required. Optional:
            ``axis_order`` (default ``["x", "y", "z"]``, ``["x", "y"]`` in 2D), ``intensity`` (default
            CT HU [-1000, 1000] → [0, 1]),
            ``lineage`` (``store_uri``, ``pattern_manifest_hash``, ``training_config``: any
            JSON-able data, dataclass configs included), ``name``, ``description``, ``epoch`` and any
            other JSON-able key. ``architecture`` / ``normalisation`` / ``num_classes``, when
            given, must agree with the model.

    Raises:
        WeightsError: missing or invalid ``input_size``, a field contradicting the model, or
            non-JSON data.
    """
    card = dict(card or {})
    config = model.config
    size = card.pop("input_size", None)
    multiple = getattr(model, "input_multiple", 1)
    axes = ["x", "y", "z"][: getattr(model, "spatial_dims", 3)]
    if (not isinstance(size, (list, tuple)) or len(size) != len(axes)
            or not all(isinstance(s, int) and s > 0 and s % multiple == 0 for s in size)):
        raise WeightsError(f"card['input_size'] must be {len(axes)} positive integers ({', '.join(axes)}) divisible "
                           f"by {multiple}, got {size!r}")
    computed = {"architecture": _plain(model.arch_args()), "normalisation": config.norm,
                "num_classes": model.num_classes}
    for key, value in computed.items():
        if key in card and _plain(card.pop(key)) != value:
            raise WeightsError(f"card[{key!r}] contradicts the model ({value!r}); leave it out, it is computed")
    axis_order = list(card.pop("axis_order", axes))
    if sorted(axis_order) != axes:
        raise WeightsError(f"card['axis_order'] must be a permutation of {', '.join(axes)}, got {axis_order!r}")
    lineage = {"store_uri": None, "pattern_manifest_hash": None, "training_config": None}
    lineage.update(card.pop("lineage", None) or {})
    for key in ("format", "files", "num_parameters", "created", "software", "outputs", "input"):
        card.pop(key, None)  # recomputed (re-exporting a read card is fine)
    import semgen_ray

    out = {
        "format": CARD_FORMAT,
        "name": card.pop("name", None),
        **computed,
        "head": config.head if model.num_classes is not None else None,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "input": {"size": list(size), "axis_order": axis_order, "layout": "N C " + " ".join(axis_order),
                  "channels": config.in_channels, "multiple_of": multiple},
        "intensity": card.pop("intensity", None) or dict(DEFAULT_INTENSITY),
        "outputs": {"reconstruction": {"channels": config.out_channels, "activation": config.out_activation},
                    "logits": None if model.num_classes is None else
                    {"classes": model.num_classes, "activation": None,
                     "note": "logits; apply softmax for probabilities"}},
        "lineage": lineage,
        **card,
        "software": {"semgen_ray": semgen_ray.__version__, "torch": torch.__version__},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    return _plain(out)


def export_weights(model: nn.Module, out_dir: str | Path, card: Mapping[str, Any] | None = None) -> Path:
    """Write ``model.safetensors``, ``model.pt`` (``{"state_dict": …}``) and ``model_card.json``.

    Args:
        model: the model (any device or dtype; tensors are written as they are, moved to the CPU;
            wrappers such as DDP or ``torch.compile`` are unwrapped, so keys keep the reference names).
        out_dir: the export directory (created; existing export files are replaced).
        card: caller fields of the model card, see :func:`make_card` (``input_size`` is required).

    Returns:
        ``out_dir`` as a ``Path``. Load it back with :func:`load_weights` or
        :func:`semgen_ray.models.load_pretrained`.
    """
    from safetensors.torch import save_file

    model = _unwrap(model)
    doc = make_card(model, card)  # validate before writing anything
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / SAFETENSORS_NAME), metadata={"format": "pt", "producer": "semgen_ray",
                                                             "card": CARD_NAME})
    torch.save({"state_dict": state, **({"epoch": doc["epoch"]} if "epoch" in doc else {})}, out / TORCH_NAME)
    doc["files"] = {"safetensors": {"path": SAFETENSORS_NAME, "sha256": file_sha256(out / SAFETENSORS_NAME)},
                    "torch": {"path": TORCH_NAME, "sha256": file_sha256(out / TORCH_NAME),
                              "layout": "{'state_dict': ..., 'epoch' (when given)}, reference module names"}}
    (out / CARD_NAME).write_text(json.dumps(doc, indent=2) + "\n")
    return out
