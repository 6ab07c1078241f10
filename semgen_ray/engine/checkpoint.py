"""Full-state checkpoints of every training loop: layout, integrity records, completeness, safe
loading, and writing / resuming through Ray Train.

A checkpoint directory (``step_<8-digit step>[_epoch_end]``, e.g. ``step_00000042``) is the union of
what every rank wrote into its own temporary directory before Ray Train uploaded it to the run's
storage (auto-encoder training and pretraining write the same layout, whichever step engine,
:mod:`semgen_ray.engine.backends`, they train with):

    ds/                      the engine's model states (rank 0) and optimizer state (DeepSpeed: one
                             shard per rank); ``latest`` names the tag
    state.json               the training state (rank 0): step, epoch, schedule, history, world size
    rng/rank_<r>.json        each rank's Python / numpy / torch (CPU and CUDA) RNG state (JSON, never pickle)
    integrity/rank_<r>.json  each rank's record of the files it wrote: size and SHA-256

A crash during the write leaves some of these missing or short; bit rot or a partial copy changes
content. :func:`checkpoint_problem` finds the first kind from a listing (no file is read but JSON);
:func:`verify_checkpoint` the second, on the downloaded directory, and also unpickles every torch
file with ``weights_only=True`` (an allowlist of DeepSpeed's own state classes) before DeepSpeed,
which loads with full pickle, sees it. A checkpoint that fails either is skipped with a warning and
the previous good one is used.
"""

from __future__ import annotations

import json
import logging
import random
import re
import tempfile
from pathlib import Path

from semgen_ray.models.weights import file_sha256

logger = logging.getLogger(__name__)

DS_TAG = "ds"
STATE_FILE = "state.json"
RNG_DIR = "rng"
INTEGRITY_DIR = "integrity"


def rng_state() -> dict:
    """This process's Python / numpy / torch (CPU, and CUDA where present) RNG states as JSON-able data."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    key, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [key, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():  # every visible device's generator (dropout etc. on the GPU)
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    key, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((key, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    # CUDA generators come back when this process sees as many devices as the one that saved them
    # (one per Ray Train worker); on a CPU-only resume they do not exist
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def write_rank_files(directory: str | Path, rank: int) -> None:
    """Write this rank's RNG state, then its integrity record of every file in ``directory``."""
    d = Path(directory)
    (d / RNG_DIR).mkdir(exist_ok=True)
    (d / RNG_DIR / f"rank_{rank}.json").write_text(json.dumps(rng_state()))
    files = {p.relative_to(d).as_posix(): [p.stat().st_size, file_sha256(p)]
             for p in sorted(d.rglob("*")) if p.is_file() and INTEGRITY_DIR not in p.relative_to(d).parts}
    (d / INTEGRITY_DIR).mkdir(exist_ok=True)
    (d / INTEGRITY_DIR / f"rank_{rank}.json").write_text(json.dumps(files))


def checkpoint_problem(fs, path: str) -> str | None:
    """Why the checkpoint directory ``path`` (on filesystem ``fs``) is incomplete, or None if it is not.

    Complete: ``state.json`` names the world size W, the W integrity records parse, and every file
    they list is there with its recorded size.
    """
    try:
        world = int(json.loads(fs.cat_file(f"{path}/{STATE_FILE}"))["world_size"])
        sizes = {p[len(path):].lstrip("/"): int(info["size"])
                 for p, info in fs.find(path, detail=True).items()}
        records = [json.loads(fs.cat_file(f"{path}/{INTEGRITY_DIR}/rank_{r}.json")) for r in range(world)]
    except Exception as err:  # noqa: BLE001 - any unreadable piece means incomplete
        return f"incomplete: {type(err).__name__}: {err}"
    for record in records:
        for name, (size, _) in record.items():
            if name not in sizes:
                return f"incomplete: {name} is missing"
            if sizes[name] != size:
                return f"incomplete: {name} has {sizes[name]} bytes, {size} were written"
    return None


def weights_only_globals() -> list:
    """DeepSpeed classes its optimizer checkpoints hold, the only globals a weights-only load allows."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def verify_checkpoint(directory: str | Path) -> str | None:
    """Why a downloaded checkpoint must not be loaded (content changed, unsafe pickle), or None."""
    import torch

    d = Path(directory)
    for record_path in sorted((d / INTEGRITY_DIR).glob("rank_*.json")):
        for name, (size, sha) in json.loads(record_path.read_text()).items():
            if file_sha256(d / name) != sha:
                return f"corrupt: {name} does not match its SHA-256 ({record_path.name})"
    with torch.serialization.safe_globals(weights_only_globals()):
        for f in sorted(d.rglob("*.pt")):
            try:
                torch.load(f, map_location="cpu", weights_only=True)
            except Exception as err:  # noqa: BLE001 - unreadable or not weights-only: do not load it
                why = re.search(r"Unsupported global: GLOBAL [\w.]+", str(err))
                why = why.group(0) if why else (str(err).strip().splitlines() or [type(err).__name__])[-1]
                return f"refused: {f.relative_to(d)} does not load with weights_only=True ({why})"
    return None


def complete_checkpoints(root: str, warn: bool = True, tag: str = "train") -> list:
    """Every complete ``step_*`` checkpoint under ``root`` (a path or URI), newest first.

    Incomplete ones are skipped, with a warning unless ``warn`` is false (ranks other than 0).
    """
    import fsspec
    from ray.train import Checkpoint

    fs, base = fsspec.core.url_to_fs(root)
    if not fs.exists(base):
        return []
    found = []
    for d in sorted((p for p in fs.ls(base, detail=False) if p.rsplit("/", 1)[-1].startswith("step_")),
                    reverse=True):
        problem = checkpoint_problem(fs, d)
        if problem is None:
            found.append(Checkpoint(root.rstrip("/") + "/" + d.rsplit("/", 1)[-1]) if "://" in root else Checkpoint(d))
        elif warn:
            logger.warning(f"[{tag}] skipping checkpoint {d}: {problem}")
    return found


def step_of(checkpoint) -> int:
    """The optimizer step a checkpoint was written at (from its directory name; -1 if unnamed)."""
    name = checkpoint.path.rstrip("/").rsplit("/", 1)[-1]
    return int(name.split("_")[1].split(".")[0]) if name.startswith("step_") else -1


def unused_name(root: str, base: str) -> str:
    """``base``, or ``base.<n>`` with the smallest n >= 1, that names no folder under ``root`` yet
    (a path or URI): a checkpoint is never written into an existing folder. Newest-first name order
    stays right: ``step_7_epoch_end.1`` sorts after ``step_7_epoch_end``, and both after ``step_7.1``."""
    import fsspec

    fs, base_path = fsspec.core.url_to_fs(root)
    name, n = base, 0
    while fs.exists(f"{base_path.rstrip('/')}/{name}"):
        n += 1
        name = f"{base}.{n}"
    return name


def write_checkpoint(engine, directory: str | Path, state: dict, rank: int) -> None:
    """Write the full state into ``directory``: the engine's weights and optimizer with ``state`` as
    its client state (every rank: DeepSpeed's save is collective), ``state.json`` (rank 0), then the
    rank's RNG state and integrity record."""
    engine.save_checkpoint(str(directory), tag=DS_TAG, client_state={"semgen": state})
    if rank == 0:
        (Path(directory) / STATE_FILE).write_text(json.dumps(state, default=float))
    write_rank_files(directory, rank)  # last: its integrity record covers everything above


def report_checkpoint(engine, state: dict, metrics: dict, rank: int, root: str | None, name: str) -> None:
    """Write a full-state checkpoint and report it with ``metrics`` to Ray Train, into a new folder
    ``name`` (or ``name.<n>``, :func:`unused_name`) under ``root``, the run's checkpoint folder."""
    import ray.train
    from ray.train import Checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        write_checkpoint(engine, tmp, state, rank)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp),
                         checkpoint_dir_name=_same_name(root, name, rank))


def _same_name(root: str | None, base: str, rank: int) -> str:
    """The folder name of a new checkpoint, the same on every rank: ``base``, or ``base.<n>`` when a
    folder of that name exists (rank 0 looks, the others are told).

    A run resumed from an older checkpoint than the newest (a bad one was skipped) reaches steps it
    saved before. Writing into their folder would leave two of Ray Train's checkpoint entries on one
    folder, and its retention deleting the old entry would delete the new one's files.
    """
    import torch.distributed as dist

    name = [unused_name(root, base) if rank == 0 and root else base]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(name, src=0)
    return name[0]


def load_newest(engine, rank: int, root: str | None, tag: str = "train") -> dict | None:
    """The training state of the newest good checkpoint, loaded into ``engine`` (weights, optimizer)
    and this rank's RNGs, with ``resumed_from`` set; ``None`` when there is none.

    Candidates, newest first: Ray Train's latest registered checkpoint and every complete one under
    ``root`` (a checkpoint written just before a crash may not have reached Ray's registry yet). One
    whose files changed since they were written, or that does not load with ``weights_only``, is
    skipped with a warning. Every rank checks every file, so all ranks pick the same checkpoint.
    """
    import fsspec
    import ray.train

    candidates = {}
    registered = ray.train.get_checkpoint()
    if registered is not None and checkpoint_problem(*fsspec.core.url_to_fs(registered.path)) is None:
        candidates[registered.path.rstrip("/")] = registered
    for found in complete_checkpoints(root, warn=rank == 0, tag=tag) if root else []:
        candidates.setdefault(found.path.rstrip("/"), found)
    for checkpoint in sorted(candidates.values(), key=step_of, reverse=True):
        with checkpoint.as_directory() as d:
            problem = verify_checkpoint(d)
            if problem is not None:
                if rank == 0:
                    logger.warning(f"[{tag}] skipping checkpoint {checkpoint.path}: {problem}")
                continue
            _, client = engine.load_checkpoint(d, tag=DS_TAG, load_optimizer_states=True,
                                               load_lr_scheduler_states=False)
            if client is None or "semgen" not in client:
                raise RuntimeError(f"checkpoint {checkpoint.path} holds no training state")
            set_rng_state(json.loads((Path(d) / RNG_DIR / f"rank_{rank}.json").read_text()))
        return {**client["semgen"], "resumed_from": checkpoint.path}
    return None
