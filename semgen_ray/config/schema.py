"""Typed configuration of every pipeline stage.

Each section is a frozen dataclass that validates itself in ``__post_init__`` and does nothing else
(no directories, no files, no Ray). Values and their sources are in docs/method.md; the ``paper`` preset
reproduces the reference sizes and ``cpu-tiny`` shrinks the same pipeline to run on 2 CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

MODALITY_OVERRIDES = (None, "CT", "MR", "OT")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message says which and why."""


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _positive_triple(name: str, value, integer: bool = True) -> None:
    _require(
        isinstance(value, tuple) and len(value) == 3
        and all((isinstance(v, int) if integer else isinstance(v, (int, float))) and v > 0 for v in value),
        f"{name} must be 3 positive {'integers' if integer else 'numbers'} (x, y, z), got {value!r}",
    )


def _choice(name: str, value, choices) -> None:
    _require(value in choices, f"{name} must be one of {list(choices)}, got {value!r}")


#: The values of every stage's ``use_gpu`` (:mod:`semgen_ray.gpus` says what each does).
USE_GPU_CHOICES = ("auto", "true", "false")


def normalise_use_gpu(value) -> str:
    """``True`` / ``False`` / ``None`` (the earlier ``auto``) or a string → one of :data:`USE_GPU_CHOICES`."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text not in USE_GPU_CHOICES:
        raise ValueError(f"use_gpu must be one of {list(USE_GPU_CHOICES)} (or true / false), got {value!r}")
    return text


def _use_gpu(section, name: str) -> None:
    """Normalise ``section.use_gpu`` (true / false / auto; ``None`` is the earlier spelling of auto)."""
    try:
        object.__setattr__(section, "use_gpu", normalise_use_gpu(section.use_gpu))
    except ValueError as err:
        raise ConfigError(f"{name}: {err}") from err


@dataclass(frozen=True)
class StoreConfig:
    """Where the volume store lives and how new arrays are chunked and compressed.

    Args:
        uri: local path or fsspec URI (``s3://bucket/cohort.zarr``). Relative paths are relative to
            the run directory.
        chunks: Zarr chunk shape (x, y, z); large chunks suit whole-region reads (docs/operations.md §2).
        clevel: Blosc/zstd compression level, 1-9.
    """

    uri: str = "store.zarr"
    chunks: tuple[int, int, int] = (128, 128, 64)
    clevel: int = 3

    def __post_init__(self) -> None:
        _require(bool(self.uri), "store.uri must not be empty")
        _positive_triple("store.chunks", self.chunks)
        _require(1 <= self.clevel <= 9, f"store.clevel must be in 1..9, got {self.clevel}")


@dataclass(frozen=True)
class IngestConfig:
    """How raw scans become store volumes (``python -m semgen_ray.ingest``).

    Args:
        modality: force ``CT``/``MR``/``OT`` instead of detecting it.
        target_spacing: resample every volume to this spacing in mm (x, y, z); None keeps native
            spacing, as the reference does (docs/method.md §1.1).
        uneven_spacing: DICOM series with uneven slice steps: ``warn`` (keep, note it), ``resample``
            (onto the median step) or ``error`` (reject the series).
        id_from: patient ids from file/folder ``name`` or the DICOM ``PatientID`` tag (``dicom``).
        split_fractions: (train, val, test) fractions for patients without a given split; the
            assignment is a stable hash of the patient id, so adding patients never moves old ones.
        max_voxels: reject larger images (an "absurd" header) before reading their voxels.
        min_extent: reject images with fewer voxels than this along any axis.
        max_spacing_mm: reject spacings above this (a broken header).
        allow_failures: exit 0 even when some sources failed (they are still reported).
        mr_intensity: how MR (and ``OT``) volumes are mapped to [0, 1] on read, recorded per
            patient at ingest: ``foreground_percentile`` (default: per volume, clip to the 0.5th and
            99.5th percentiles of its foreground; any scale works) or ``fixed`` (``mr_window``).
            CT always uses the HU window [-1000, 1000] (:mod:`semgen_ray.store.intensity`).
        mr_window: the fixed MR window (lo, hi) of ``mr_intensity: fixed`` (Models Genesis'
            [0, 4000], which assumes raw scanner units).
        kind: ``3d`` (default): volumes (NIfTI, DICOM series, MetaImage, NRRD); ``2d``: radiographs,
            every DICOM, PNG, JPEG and 2D NIfTI file one 2D image (:mod:`semgen_ray.io.radiograph`).
    """

    modality: str | None = None
    target_spacing: tuple[float, float, float] | None = None
    uneven_spacing: str = "warn"
    id_from: str = "name"
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    max_voxels: int = 1024 ** 3
    min_extent: int = 8
    max_spacing_mm: float = 50.0
    allow_failures: bool = False
    mr_intensity: str = "foreground_percentile"
    mr_window: tuple[float, float] = (0.0, 4000.0)
    kind: str = "3d"

    def __post_init__(self) -> None:
        _choice("ingest.modality", self.modality, MODALITY_OVERRIDES)
        _choice("ingest.kind", self.kind, ("3d", "2d"))
        _require(self.kind == "3d" or self.modality in (None, "OT"),
                 f"ingest.modality {self.modality} is for volumes; a 2D image's modality comes from its file "
                 "(DICOM CR / DX) or is OT")
        _choice("ingest.mr_intensity", self.mr_intensity, ("foreground_percentile", "fixed"))
        _require(len(self.mr_window) == 2 and all(isinstance(v, (int, float)) for v in self.mr_window)
                 and self.mr_window[0] < self.mr_window[1],
                 f"ingest.mr_window must be two numbers lo < hi, got {self.mr_window!r}")
        if self.target_spacing is not None:
            _positive_triple("ingest.target_spacing", self.target_spacing, integer=False)
        _choice("ingest.uneven_spacing", self.uneven_spacing, ("warn", "resample", "error"))
        _choice("ingest.id_from", self.id_from, ("name", "dicom"))
        _require(
            len(self.split_fractions) == 3 and all(f >= 0 for f in self.split_fractions)
            and abs(sum(self.split_fractions) - 1.0) < 1e-6,
            f"ingest.split_fractions must be 3 non-negative numbers summing to 1, got {self.split_fractions}",
        )
        _require(self.max_voxels > 0, "ingest.max_voxels must be positive")
        _require(self.min_extent >= 1, "ingest.min_extent must be >= 1")
        _require(self.max_spacing_mm > 0, "ingest.max_spacing_mm must be positive")


@dataclass(frozen=True)
class PhantomConfig:
    """The built-in synthetic chest-CT cohort (``python -m semgen_ray.phantoms``).

    Args:
        n: number of patients.
        seed: cohort seed; patient i is a pure function of (seed, i).
        shape: voxels (x, y, z); the field of view stays about 360×360×320 mm.
    """

    n: int = 64
    seed: int = 0
    shape: tuple[int, int, int] = (256, 256, 128)

    def __post_init__(self) -> None:
        _require(self.n >= 1, f"phantoms.n must be >= 1, got {self.n}")
        _positive_triple("phantoms.shape", self.shape)
        _require(min(self.shape) >= 16, f"phantoms.shape must be >= 16 voxels per axis, got {self.shape}")


@dataclass(frozen=True)
class DataConfig:
    """Streaming crops and volumes from the store with Ray Data.

    Args:
        cube_size: the training cube (x, y, z); the reference uses 64×64×32.
        volume_shape: whole-scan size for the self-discovery auto-encoder (reference 128×128×64).
        read_cpus: CPUs reserved per read task (fractions let Data share nodes with Train).
    """

    cube_size: tuple[int, int, int] = (64, 64, 32)
    volume_shape: tuple[int, int, int] = (128, 128, 64)
    read_cpus: float = 1.0

    def __post_init__(self) -> None:
        _positive_triple("data.cube_size", self.cube_size)
        _positive_triple("data.volume_shape", self.volume_shape)
        flat = self.cube_size[2] == 1  # a flat cube: a 2D image, for a 2D U-Net (z is not pooled)
        _require(all(c % 8 == 0 for c in (self.cube_size[:2] if flat else self.cube_size)),
                 f"data.cube_size must be divisible by 8 (3 poolings in the U-Net), got {self.cube_size}")
        _require(flat == (self.volume_shape[2] == 1),
                 f"data.cube_size {list(self.cube_size)} and data.volume_shape {list(self.volume_shape)} must be "
                 "flat (z = 1: 2D images) together or not at all")
        _require(self.read_cpus > 0, "data.read_cpus must be positive")

    @property
    def flat(self) -> bool:
        """Whether the run is on 2D images (Semantic Genesis 2D): a flat volume shape and cube (z = 1)."""
        return int(self.volume_shape[2]) == 1


@dataclass(frozen=True)
class DiscoveryConfig:
    """Self-discovery of anatomical patterns (docs/method.md §1.3-§2).

    Args:
        num_classes: C, reference patients = pseudo-classes (paper 44).
        k_train, k_val: neighbours per reference in train / val (paper 200 / 30; reference included).
        resolutions: 1 = native crop only; 2-3 add crops of in-plane side U[min_patch, max_patch).
        min_patch, max_patch, max_offset: rescaled-crop side range and in-plane jitter (50, 80, 10).
        border_xy, border_z: margins of the coordinate draw (100, 30 voxels).
        lung_threshold_hu, lung_max: the "mostly lung" test: at most ``lung_max`` of the window
            (weighted) at or above ``lung_threshold_hu`` (-150 HU, 0.15).
        min_distance: minimum Euclidean voxel distance between class coordinates (5, docs/method.md §2.1):
            each new class's coordinate keeps at least this far from every earlier class's.
        max_tries: coordinate draws per reference before another reference is taken (200).
        autoencoder: ``bottleneck`` (no skips, default) or ``unet`` (skips; can copy its input).
        coordinates: ``voxel`` (the same raw voxel index in every neighbour, the paper) or
            ``body_box`` (the class coordinate taken relative to the reference's body bounding box,
            CT voxels > -500 HU, other modalities above Otsu's threshold, and mapped into each
            neighbour's body box).
        index: ``hnsw``, ``exact`` or ``auto``: the cheaper of the two by a cost model over
            (references, patients, dimension) calibrated on ``benchmarks/results/neighbours*.json``
            (``semgen_ray.discovery.neighbours.choose_index``); the choice and the estimated costs
            are recorded in ``discovery.json``.
        hnsw_m, hnsw_ef_construction, hnsw_ef: HNSW graph degree, build and query beam widths.
        hnsw_pca_dim: 0 (default) builds the graph over the full embeddings; > 0 over their leading
            principal components, candidates re-ranked by full-dimension distance (faster for
            embeddings of low intrinsic dimension; the recall is measured and recorded each run).
        ae_epochs, ae_batch_size, ae_lr, ae_patience: the auto-encoder's training (docs/method.md §1.3:
            up to 10,000 epochs, batch 8, Adam 1e-3, early stopping after 50 epochs).
        ae_workers: Ray Train workers for the auto-encoder.
        ae_engine: the auto-encoder's step engine, ``torch`` (default; DDP across workers) or
            ``deepspeed`` (:mod:`semgen_ray.engine.backends`).
        ae_precision: ``fp32`` (default), ``bf16`` (autocast with ``torch``; 16-bit weights and fp32
            masters with ``deepspeed``), ``fp16`` (``deepspeed`` on GPUs) or ``auto``.
        ae_zero_stage: DeepSpeed's ZeRO stage 0-3 (``deepspeed`` only).
        use_gpu: ``auto`` (GPUs when the cluster has or can scale up GPU nodes), ``true`` (wait for
            them, then fail) or ``false``: the auto-encoder's training and the embedding
            (:mod:`semgen_ray.gpus`).
    """

    num_classes: int = 44
    k_train: int = 200
    k_val: int = 30
    resolutions: int = 3
    min_patch: int = 50
    max_patch: int = 80
    max_offset: int = 10
    border_xy: int = 100
    border_z: int = 30
    lung_threshold_hu: float = -150.0
    lung_max: float = 0.15
    min_distance: float = 5.0
    max_tries: int = 200
    autoencoder: str = "bottleneck"
    coordinates: str = "voxel"
    index: str = "auto"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef: int = 400
    hnsw_pca_dim: int = 0
    ae_epochs: int = 10_000
    ae_batch_size: int = 8
    ae_lr: float = 1e-3
    ae_patience: int = 50
    ae_workers: int = 1
    ae_engine: str = "torch"
    ae_precision: str = "fp32"
    ae_zero_stage: int = 0
    use_gpu: str | bool | None = "auto"  # normalised to "auto" | "true" | "false"

    def __post_init__(self) -> None:
        _use_gpu(self, "discovery.use_gpu")
        for name in ("num_classes", "k_train", "k_val", "max_tries", "hnsw_m", "hnsw_ef_construction",
                     "hnsw_ef", "ae_epochs", "ae_batch_size", "ae_patience", "ae_workers"):
            _require(getattr(self, name) >= 1, f"discovery.{name} must be >= 1")
        _require(1 <= self.resolutions <= 3, f"discovery.resolutions must be 1..3, got {self.resolutions}")
        _require(0 < self.min_patch < self.max_patch,
                 f"discovery needs 0 < min_patch < max_patch, got {self.min_patch}, {self.max_patch}")
        _require(self.max_offset >= 0 and self.border_xy >= 0 and self.border_z >= 0,
                 "discovery offsets and borders must be >= 0")
        _require(0 < self.lung_max <= 1, f"discovery.lung_max must be in (0, 1], got {self.lung_max}")
        _require(self.min_distance >= 0, "discovery.min_distance must be >= 0")
        _choice("discovery.autoencoder", self.autoencoder, ("bottleneck", "unet"))
        _choice("discovery.coordinates", self.coordinates, ("voxel", "body_box"))
        _choice("discovery.index", self.index, ("hnsw", "exact", "auto"))
        _require(self.hnsw_pca_dim >= 0, "discovery.hnsw_pca_dim must be >= 0 (0 = no PCA)")
        _require(self.ae_lr > 0, "discovery.ae_lr must be positive")
        _choice("discovery.ae_engine", self.ae_engine, ("torch", "deepspeed"))
        _choice("discovery.ae_precision", self.ae_precision, ("fp32", "bf16", "fp16", "auto"))
        _require(0 <= self.ae_zero_stage <= 3, f"discovery.ae_zero_stage must be 0..3, got {self.ae_zero_stage}")
        _require(self.ae_engine == "deepspeed" or (self.ae_precision != "fp16" and self.ae_zero_stage == 0),
                 "discovery.ae_precision=fp16 and discovery.ae_zero_stage > 0 need discovery.ae_engine=deepspeed")


@dataclass(frozen=True)
class ModelConfig:
    """The U-Net 3D with its classification head (docs/method.md §4); built by ``semgen_ray.models.build_model``.

    Args:
        width: channels of the first convolution (reference 32; the levels are 2w, 4w, 8w, 16w).
        norm: ``batch`` (running statistics at eval), ``cont_bn`` (batch statistics always, the
            reference), ``group`` or ``instance``.
        head: ``torch`` (conv 1024 → GAP → fc, the PyTorch reference), ``keras``
            (conv 512 → GAP → fc 1024 → fc) or ``linear`` (GAP → fc, the fine-tuning head of
            docs/method.md §6.1); ``None``: no head.
        num_classes: C, outputs of the classification head; ``None`` (default) builds no head. The
            pretraining stage sets it from ``discovery.num_classes``.
        depth: resolution levels (reference 4 = 3 poolings); inputs must be divisible by 2**(depth-1).
        in_channels: input channels (1 for CT).
        out_channels: reconstruction / segmentation channels (1 in the reference).
        embed_dim: bottleneck channels, also the size of the auto-encoder's patient embedding
            (docs/method.md §1.3); ``None``: width·2**depth (512 at width 32).
        out_activation: ``sigmoid`` on the decoder output (the reference) or ``None`` for logits.
    """

    width: int = 32
    norm: str = "batch"
    head: str | None = "torch"
    num_classes: int | None = None
    depth: int = 4
    in_channels: int = 1
    out_channels: int = 1
    embed_dim: int | None = None
    out_activation: str | None = "sigmoid"

    def __post_init__(self) -> None:
        _require(isinstance(self.width, int) and self.width >= 1, f"model.width must be >= 1, got {self.width}")
        _choice("model.norm", self.norm, ("batch", "cont_bn", "group", "instance"))
        _choice("model.head", self.head, ("torch", "keras", "linear", None))
        _require(self.num_classes is None or (isinstance(self.num_classes, int) and self.num_classes >= 1),
                 f"model.num_classes must be None (no head) or >= 1, got {self.num_classes!r}")
        _require(isinstance(self.depth, int) and 2 <= self.depth <= 7,
                 f"model.depth must be in 2..7, got {self.depth!r}")
        _require(isinstance(self.in_channels, int) and self.in_channels >= 1,
                 f"model.in_channels must be >= 1, got {self.in_channels!r}")
        _require(isinstance(self.out_channels, int) and self.out_channels >= 1,
                 f"model.out_channels must be >= 1, got {self.out_channels!r}")
        _require(self.embed_dim is None or (isinstance(self.embed_dim, int) and self.embed_dim >= 1),
                 f"model.embed_dim must be None (width·2**depth) or >= 1, got {self.embed_dim!r}")
        _choice("model.out_activation", self.out_activation, ("sigmoid", None))


#: Pretraining objectives (``train.objective``); see :mod:`semgen_ray.train.objectives`.
OBJECTIVES = ("semantic_genesis", "restoration", "classification", "inpainting_classification",
              "shuffling_classification")
#: Corruption policy fields an objective fixes on top of ``train.corruption_overrides``: the paper's
#: add-ons restore from one corruption, always (``one_of`` mode with a single non-zero weight).
OBJECTIVE_CORRUPTION = {
    "inpainting_classification": {"mode": "one_of", "one_of_weights": (0.0, 0.0, 1.0, 0.0)},
    "shuffling_classification": {"mode": "one_of", "one_of_weights": (1.0, 0.0, 0.0, 0.0)},
}


@dataclass(frozen=True)
class TrainConfig:
    """Self-classification + self-restoration pretraining (docs/method.md §5).

    Args:
        batch_size: cubes per worker per step (reference 64).
        lr: Adam learning rate (1e-3).
        lambda_cls, lambda_rec: loss weights (0.01, 1).
        patience: epochs without validation improvement before stopping (50).
        max_epochs: hard cap on epochs.
        num_workers: Ray Train workers.
        precision: ``auto`` (bf16 where every worker's device computes bf16 natively, else fp32),
            ``bf16``, ``fp16`` (GPU only) or ``fp32``.
        zero_stage: DeepSpeed ZeRO stage 0-3.
        corruption: restoration corruption preset: ``sg`` (default), ``mg``, ``sg_keras``.
        corruption_overrides: fields of ``semgen_ray.transforms.CorruptionPolicy`` that differ from
            the preset, e.g. ``{shuffle_blocks: 100, nonlinear_rate: 0.5}``; every probability and
            size of the corruptions is one of them.
        target: restoration target: ``original`` (un-deformed, the reference) or ``deformed``.
        objective: ``semantic_genesis`` (λ_cls·CE + λ_rec·MSE), ``restoration`` (Models Genesis,
            MSE only), ``classification`` (CE only, uncorrupted cubes), and the paper's add-ons
            ``inpainting_classification`` / ``shuffling_classification`` (classification plus
            restoration from in-painting only / local shuffling only).
        optimizer: ``adam`` (Semantic Genesis) or ``sgd`` (momentum 0.9; Models Genesis used lr 1).
        schedule: ``step`` (StepLR per epoch, the PyTorch reference), ``plateau``
            (ReduceLROnPlateau on the validation loss, the Keras reference) or ``none``.
        step_epochs: StepLR period; ``None``: ``int(0.8 × patience)`` (40 for 50, the reference).
        gamma: LR factor of both schedules (0.5).
        grad_accum: micro-batches per optimizer step (DeepSpeed gradient accumulation); an epoch's
            last step takes the micro-batches left, so no gradient crosses an epoch's end.
        corrupt_on: ``data`` (numpy back end on Ray Data CPU workers; each pass draws fresh seeds,
            recorded per cube), ``device`` (torch back end on the training device; seeds from
            (run seed, epoch, row), fully replayable) or ``auto`` (the default: ``device`` when the
            train stage runs on GPUs, which a few CPU cores could not feed with corrupted cubes,
            else ``data``; resolved before the run is keyed, so an ``auto`` run on CPUs is the
            ``data`` run of earlier versions).
        fixed_val_corruption: corrupt the validation cubes the same way all run (default; a steady
            early-stopping signal) or, ``False``, redraw them each epoch as the reference does.
        checkpoint_every: also checkpoint every this many optimizer steps (0: only at epoch ends).
        keep_checkpoints: how many of the best epoch-end checkpoints (joint-phase validation loss)
            Ray Train keeps; the latest checkpoint, mid-epoch or not, is always kept too (resuming).
        max_failures: Ray Train ``FailureConfig`` retries of a failed run (from its last checkpoint).
            A lost node is such a failure: the retry waits until ``num_workers`` workers fit again
            (an autoscaler or a restarted node brings the replacement); the world size stays fixed,
            because DeepSpeed's optimizer shards are cut for it.
        placement: where Ray places the workers: ``PACK`` (fill nodes in turn, the default),
            ``SPREAD`` (across nodes where possible), ``STRICT_SPREAD`` (each on a different node),
            ``STRICT_PACK`` (all on one node).
        max_steps: stop after this many optimizer steps in total (0: no cap).
        cls_warmup_epochs: the paper's schedule (Semantic Genesis §2: "we first train the
            classification branch for 20 epochs, then jointly train the entire model"): this many
            epochs of the classification loss alone on uncorrupted cubes before the joint loss
            (0: joint from the start; objectives without a classification loss ignore it).
        cpus_per_worker: logical CPUs per Train worker (0.5 leaves Ray Data a budget on a small node).
        use_gpu: ``auto`` (one GPU per worker when the cluster has or can scale up GPU nodes),
            ``true`` (wait for them up to ``ray.gpu_wait_s``, then fail) or ``false``
            (:mod:`semgen_ray.gpus`).
        shuffle_buffer: rows of the per-worker local shuffle buffer (crops arrive grouped by patient).
        storage_path: where Ray Train keeps checkpoints (the run is ``<storage_path>/pretrain``):
            relative to the train stage's folder (``<run_dir>/train``), an absolute path, or an
            object-store URI (``s3://…``).
    """

    batch_size: int = 64
    lr: float = 1e-3
    lambda_cls: float = 0.01
    lambda_rec: float = 1.0
    patience: int = 50
    max_epochs: int = 10000
    num_workers: int = 1
    precision: str = "auto"
    zero_stage: int = 1
    corruption: str = "sg"
    corruption_overrides: dict = field(default_factory=dict)
    target: str = "original"
    objective: str = "semantic_genesis"
    optimizer: str = "adam"
    schedule: str = "step"
    step_epochs: int | None = None
    gamma: float = 0.5
    grad_accum: int = 1
    corrupt_on: str = "auto"
    fixed_val_corruption: bool = True
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    max_failures: int = 2
    placement: str = "PACK"
    max_steps: int = 0
    cls_warmup_epochs: int = 0
    cpus_per_worker: float = 0.5
    use_gpu: str | bool | None = "auto"  # normalised to "auto" | "true" | "false"
    shuffle_buffer: int = 256
    storage_path: str = "checkpoints"

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "train.batch_size must be >= 1")
        _choice("train.objective", self.objective, OBJECTIVES)
        _choice("train.optimizer", self.optimizer, ("adam", "sgd"))
        _choice("train.schedule", self.schedule, ("step", "plateau", "none"))
        _require(self.step_epochs is None or self.step_epochs >= 1, "train.step_epochs must be >= 1")
        _require(0 < self.gamma <= 1, "train.gamma must be in (0, 1]")
        _require(self.grad_accum >= 1, "train.grad_accum must be >= 1")
        _choice("train.corrupt_on", self.corrupt_on, ("auto", "data", "device"))
        _require(self.cls_warmup_epochs >= 0, "train.cls_warmup_epochs must be >= 0")
        _require(self.checkpoint_every >= 0 and self.max_steps >= 0, "train.checkpoint_every and max_steps must be >= 0")
        _require(self.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1")
        _require(self.max_failures >= -1, "train.max_failures must be >= -1 (-1: retry forever)")
        _choice("train.placement", self.placement, ("PACK", "SPREAD", "STRICT_SPREAD", "STRICT_PACK"))
        _require(self.cpus_per_worker > 0, "train.cpus_per_worker must be positive")
        _use_gpu(self, "train.use_gpu")
        _require(self.shuffle_buffer >= 0, "train.shuffle_buffer must be >= 0")
        _require(bool(self.storage_path), "train.storage_path must not be empty")
        from semgen_ray.runfolder import RunFolderError, inside  # the run's one path resolver (stdlib only)

        try:
            inside("<run_dir>/train", self.storage_path)
        except RunFolderError as err:
            raise ConfigError(f"train.storage_path: {err}") from err
        _require(self.lr > 0, "train.lr must be positive")
        _require(self.lambda_cls >= 0 and self.lambda_rec >= 0, "train loss weights must be >= 0")
        _require(self.patience >= 1 and self.max_epochs >= 1, "train.patience and max_epochs must be >= 1")
        _require(self.num_workers >= 1, "train.num_workers must be >= 1")
        _choice("train.precision", self.precision, ("auto", "bf16", "fp16", "fp32"))
        _choice("train.zero_stage", self.zero_stage, (0, 1, 2, 3))
        _choice("train.corruption", self.corruption, ("sg", "mg", "sg_keras"))
        _require(isinstance(self.corruption_overrides, dict),
                 f"train.corruption_overrides must be a mapping of policy fields, got {self.corruption_overrides!r}")
        from semgen_ray.transforms.policy import PolicyError  # numpy only

        try:
            self.corruption_policy  # built (and checked) once, with the config
        except PolicyError as err:
            raise ConfigError(f"train.corruption_overrides: {err}") from err
        _choice("train.target", self.target, ("original", "deformed"))

    @cached_property
    def corruption_policy(self):
        """The run's :class:`~semgen_ray.transforms.CorruptionPolicy`: the ``corruption`` preset with
        ``corruption_overrides`` and then the objective's own fields (:data:`OBJECTIVE_CORRUPTION`) on
        top. The only place they are merged; built once per config and handed as this object to the
        stream check, the Ray Data workers, the training workers and the report."""
        from semgen_ray.transforms.policy import policy_from_preset

        return policy_from_preset(self.corruption, **{**self.corruption_overrides,
                                                      **OBJECTIVE_CORRUPTION.get(self.objective, {})})


@dataclass(frozen=True)
class EvaluateConfig:
    """Target-task evaluation (docs/method.md §6): seeded fine-tuning trials per arm.

    Args:
        trials: runs per arm, task and label fraction (paper 10), seeds 0 .. trials-1.
        arms: initialisations compared: ``scratch`` (random), pretraining objectives
            (``semantic_genesis``, ``restoration``, ``classification``, the add-ons; their exports are
            made by the pipeline when missing) and names of ``weights``; ``scratch_2d`` (a random 2D
            U-Net) and the ``weights`` whose export is 2D are 2D slice-based arms, fine-tuned on the
            cubes' axial slices and scored per cube (docs/method.md §6.4).
        weights: more arms, name → weight file or export folder (exports of this project, 2D ones
            included, or the official Models Genesis / Semantic Genesis ``.pt`` files).
        tasks: ``classification`` (NCC-like, AUC) and/or ``segmentation`` (NCS-like, foreground Dice).
        alpha: significance level of the tests.
        label_fraction: fraction of the labelled training patients used (the low-label regime < 1);
            the comparison table and the tests are made at this fraction.
        curve_fractions: more label fractions run for the label-efficiency curve (empty: none).
        curve_trials: seeds per arm and task at each curve fraction (0: ``trials``); fewer make the
            curve cheaper without touching the primary comparison.
        lr, batch_size: fine-tuning (docs/method.md §6.2: Adam 1e-3).
        max_steps: optimizer steps per trial at most (the budget counts steps, not epochs).
        eval_every: validate on the whole validation split every this many steps.
        patience: validations without improvement before early stopping.
        lr_patience: validations without improvement before the LR is halved (< ``patience``,
            so the schedule acts before training stops).
        per_task: per-task overrides of the fine-tuning settings above, task → {setting: value}, e.g.
            ``{classification: {batch_size: 24, patience: 10}}`` (the ``paper`` preset holds docs/method.md
            §6.2's per-task values).
        head: classification head for fine-tuning: ``linear`` (global pooling of the encoder
            output + one linear layer, docs/method.md §6.1) or the pretraining heads ``torch`` / ``keras``.
        engine: each trial's step engine, ``torch`` (default) or ``deepspeed`` (ZeRO-0 in a one-rank
            process group, :mod:`semgen_ray.engine.backends`).
        precision: fine-tuning precision, ``fp32`` (default), ``bf16`` (autocast with ``torch``;
            bf16 weights with fp32 masters with ``deepspeed``), ``fp16`` (``deepspeed`` on GPUs) or
            ``auto`` (bf16 where the device computes it natively).
        cpus_per_trial: CPUs per Tune trial (trials run in parallel as CPUs allow).
        use_gpu: ``auto`` / ``true`` / ``false`` for the fine-tuning trials (:mod:`semgen_ray.gpus`).
        gpus_per_trial: GPUs per trial when on GPUs (a fraction shares a GPU between trials).
        target_store: a labelled store for the target tasks; empty: a phantom cohort of
            ``target_patients`` generated with ``target_seed`` (a different cohort seed from
            pretraining, so no pretraining patient is ever a target patient).
        target_shape: voxels (x, y, z) of the target phantoms; ``None``: ``phantoms.shape``.
        min_voxels: smallest labelled object that makes a positive cube.
        negatives: classification negatives: ``candidates`` (nodule-like structures inside the lung,
            matched to the positives' intensity statistics, as LUNA16's false-positive candidates),
            ``matched`` (label-free boxes anywhere, matched to the same statistics; the negatives of
            2D images, which have no lung mask) or ``random`` (random boxes anywhere without a
            label, the earlier behaviour).
        negatives_per_positive: non-nodule cubes per nodule cube (classification).
        cube_mm: physical size (x, y, z) in mm of a target cube, resampled to ``data.cube_size``
            voxels (the paper's 64×64×32 LUNA16 cubes span about 45 mm); ``None``: ``data.cube_size``
            voxels at the store's spacing.
        seg_jitter: segmentation cubes are centred on an object moved by up to this fraction of the
            cube per axis (objects are not always in the middle).
        seg_background: extra segmentation cubes per object, at random places inside the body
            (so large-lesion stores also teach background).
        max_shortcut_auc: a classification task whose best one-number shortcut (mean intensity,
            fraction of air, fraction in the lung range, …) reaches this AUC is reported as a
            shortcut task.
        gate_auc, gate_dice: learnability gates: scratch with all labels must reach them, or the
            task is reported as invalid instead of compared.
    """

    trials: int = 10
    arms: tuple[str, ...] = ("scratch", "restoration", "classification", "semantic_genesis")
    weights: dict = field(default_factory=dict)
    tasks: tuple[str, ...] = ("classification", "segmentation")
    alpha: float = 0.05
    label_fraction: float = 1.0
    curve_fractions: tuple[float, ...] = ()
    curve_trials: int = 0
    lr: float = 1e-3
    batch_size: int = 8
    max_steps: int = 400
    eval_every: int = 20
    patience: int = 8
    lr_patience: int = 3
    per_task: dict = field(default_factory=dict)
    head: str = "linear"
    engine: str = "torch"
    precision: str = "fp32"
    cpus_per_trial: float = 1.0
    use_gpu: str | bool | None = "auto"  # normalised to "auto" | "true" | "false"
    gpus_per_trial: float = 1.0
    target_store: str = ""
    target_patients: int = 32
    target_seed: int = 1000
    target_shape: tuple[int, int, int] | None = None
    min_voxels: int = 8
    negatives: str = "candidates"
    negatives_per_positive: int = 2
    cube_mm: tuple[float, float, float] | None = (45.0, 45.0, 45.0)
    seg_jitter: float = 0.25
    seg_background: int = 0
    max_shortcut_auc: float = 0.75
    gate_auc: float = 0.80
    gate_dice: float = 0.50

    def __post_init__(self) -> None:
        _require(self.trials >= 2, "evaluate.trials must be >= 2 (a t-test needs two samples)")
        _require(len(self.arms) >= 1, "evaluate.arms must not be empty")
        _require(len(set(self.arms)) == len(self.arms), "evaluate.arms has duplicates")
        known = ("scratch", "scratch_2d", *OBJECTIVES, *self.weights)
        for arm in self.arms:
            _choice("evaluate.arms entry", arm, known)
        for t in self.tasks:
            _choice("evaluate.tasks entry", t, ("classification", "segmentation"))
        _require(len(self.tasks) >= 1, "evaluate.tasks must not be empty")
        _require(0 < self.alpha < 1, "evaluate.alpha must be in (0, 1)")
        _require(0 < self.label_fraction <= 1, "evaluate.label_fraction must be in (0, 1]")
        _require(all(0 < f <= 1 for f in self.curve_fractions), "evaluate.curve_fractions must lie in (0, 1]")
        _require(self.curve_trials == 0 or self.curve_trials >= 2, "evaluate.curve_trials must be 0 (= trials) or >= 2")
        _require(self.lr > 0 and self.batch_size >= 2, "evaluate.lr must be > 0 and batch_size >= 2")
        _require(self.max_steps >= 1 and self.eval_every >= 1 and self.patience >= 1 and self.lr_patience >= 1,
                 "evaluate.max_steps, eval_every, patience and lr_patience must be >= 1")
        _require(self.lr_patience < self.patience,
                 f"evaluate.lr_patience ({self.lr_patience}) must be < patience ({self.patience}): otherwise "
                 "early stopping ends a trial before the LR schedule ever acts")
        tunable = ("lr", "batch_size", "max_steps", "eval_every", "patience", "lr_patience")
        for task, overrides in self.per_task.items():
            _choice("evaluate.per_task key", task, ("classification", "segmentation"))
            _require(isinstance(overrides, dict) and all(k in tunable for k in overrides),
                     f"evaluate.per_task[{task!r}] must map settings of {list(tunable)} to values, got {overrides!r}")
        _choice("evaluate.head", self.head, ("linear", "torch", "keras"))
        _choice("evaluate.engine", self.engine, ("torch", "deepspeed"))
        _choice("evaluate.precision", self.precision, ("fp32", "bf16", "fp16", "auto"))
        _require(self.precision != "fp16" or self.engine == "deepspeed",
                 "evaluate.precision=fp16 needs evaluate.engine=deepspeed (dynamic loss scaling)")
        if self.target_shape is not None:
            _positive_triple("evaluate.target_shape", self.target_shape)
        _choice("evaluate.negatives", self.negatives, ("candidates", "matched", "random"))
        if self.cube_mm is not None:
            _positive_triple("evaluate.cube_mm", self.cube_mm, integer=False)
        _require(0 <= self.seg_jitter < 0.5, "evaluate.seg_jitter must be in [0, 0.5)")
        _require(self.seg_background >= 0, "evaluate.seg_background must be >= 0")
        _require(0.5 < self.max_shortcut_auc <= 1, "evaluate.max_shortcut_auc must be in (0.5, 1]")
        _require(0 < self.gate_auc <= 1 and 0 < self.gate_dice <= 1, "evaluate.gate_auc and gate_dice must be in (0, 1]")
        _require(self.cpus_per_trial > 0, "evaluate.cpus_per_trial must be positive")
        _require(self.gpus_per_trial > 0, "evaluate.gpus_per_trial must be positive")
        _use_gpu(self, "evaluate.use_gpu")
        _require(self.target_patients >= 3, "evaluate.target_patients must be >= 3 (train, val, test)")
        _require(self.min_voxels >= 1 and self.negatives_per_positive >= 1,
                 "evaluate.min_voxels and negatives_per_positive must be >= 1")


@dataclass(frozen=True)
class RayConfig:
    """Where Ray runs.

    Args:
        address: None starts Ray in-process (local mode) unless ``RAY_ADDRESS`` is set (as it is
            under ``ray job submit``); ``auto`` or ``ray://host:port`` join a cluster.
        num_cpus: logical CPUs of the local instance (None: the machine's).
        object_store_mb: local object store size.
        dashboard: local mode: serve the Ray dashboard (Train and Data views) on
            ``127.0.0.1:dashboard_port``; off by default (it adds start-up time). A cluster's
            dashboard is set up by ``ray start`` / ``ray up``.
        dashboard_port: its port (8265).
        gpu_wait_s: how long a stage that needs GPUs waits for them (autoscaling GPU nodes take
            minutes to start) before it fails.
    """

    address: str | None = None
    num_cpus: int | None = None
    object_store_mb: int = 512
    dashboard: bool = False
    dashboard_port: int = 8265
    gpu_wait_s: float = 900.0

    def __post_init__(self) -> None:
        _require(self.gpu_wait_s >= 0, "ray.gpu_wait_s must be >= 0")
        _require(self.num_cpus is None or self.num_cpus >= 1, "ray.num_cpus must be >= 1")
        _require(self.object_store_mb >= 64, "ray.object_store_mb must be >= 64")


@dataclass(frozen=True)
class SemGenConfig:
    """The whole run: one section per stage plus where outputs go.

    Args:
        run_dir: directory (or URI) for every artefact of the run.
        seed: run seed; every random draw derives from it.
    """

    run_dir: str = "runs/default"
    seed: int = 0
    store: StoreConfig = field(default_factory=StoreConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    phantoms: PhantomConfig = field(default_factory=PhantomConfig)
    data: DataConfig = field(default_factory=DataConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        _require(bool(self.run_dir), "run_dir must not be empty")
