"""Digitally reconstructed chest radiographs (DRRs) of phantom patients: the built-in 2D cohort of
Semantic Genesis 2D (which the paper pretrains on chest X-rays), with the nodules as labels.

A posterior-anterior (PA) chest film from a CT volume, in four vectorised steps:

1. **Attenuation.** HU → linear attenuation at an effective energy of about 60 keV:
   ``μ = μ_water · (1 + HU / 1000)``, clipped at 0 (air), ``μ_water`` = 0.0206 / mm.
2. **Line integrals** along the anterior-posterior axis (y), a parallel beam:
   ``P(x, z) = Σ_y μ · Δy``; the transmitted fraction is ``exp(-P)``.
3. **Detector.** Scatter (a fraction of the primary, spread by a broad Gaussian) is added to the
   transmission; quantum noise of ``photons`` per pixel at zero attenuation (Gaussian, variance
   proportional to the signal); a little unsharpness (σ = 0.5 pixel). The log of the transmission
   goes through a film's characteristic (S-shaped, H&D) curve centred by automatic exposure control
   on the median of the body's pixels, so bone and mediastinum are white, the lungs dark grey and
   the air around the body black, as on a chest film.
4. **Layout** as a PA film is read: rows from head to feet (superior at the top), columns from the
   patient's right to the patient's left (the patient's right on the viewer's left); 12-bit unsigned
   pixels, ``pixel_spacing`` = (Δz, Δx) mm.

Labels: ``mask`` is the nodules' projection (pixel value = nodule id, the higher id where two
overlap) and ``boxes`` each nodule's bounding box on the film. The noise is seeded, so a patient's
radiograph is the same on every run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Linear attenuation of water (1/mm) at an effective energy of about 60 keV.
MU_WATER_PER_MM = 0.0206
#: Bits of the detector's pixel values.
BITS = 12


@dataclass(frozen=True)
class Detector:
    """The detector and film response (see the module docstring).

    Attributes:
        photons: photons per pixel at zero attenuation (quantum noise); 0 for none.
        scatter_fraction: scatter added, relative to the unattenuated primary's mean.
        scatter_sigma_mm: spread of the scatter.
        blur_pixels: unsharpness (Gaussian σ in pixels).
        gamma: slope of the characteristic curve per unit of log transmission (natural log).
    """

    photons: float = 2.0e4
    scatter_fraction: float = 0.05
    scatter_sigma_mm: float = 30.0
    blur_pixels: float = 0.5
    gamma: float = 1.6

    def __post_init__(self) -> None:
        if self.photons < 0 or self.scatter_fraction < 0 or self.scatter_sigma_mm <= 0 or self.blur_pixels < 0 \
                or self.gamma <= 0:
            raise ValueError(f"detector settings out of range: {self}")


@dataclass(frozen=True)
class Radiograph:
    """A PA chest radiograph and its nodule labels.

    Attributes:
        image: (rows, columns) uint16, 12-bit; rows superior → inferior, columns patient right → left.
        pixel_spacing: (row, column) spacing in mm.
        mask: (rows, columns) uint8, nodule ids (0 background).
        boxes: per nodule with at least one pixel: ``{"id", "row0", "col0", "row1", "col1"}`` (half-open).
    """

    image: np.ndarray
    pixel_spacing: tuple[float, float]
    mask: np.ndarray
    boxes: list[dict]


def line_integrals(hu: np.ndarray, spacing_y: float) -> np.ndarray:
    """``Σ_y μ(HU) · Δy`` of an (X, Y, Z) HU volume: (X, Z) float32, the attenuation along the PA rays."""
    mu = np.asarray(hu, dtype=np.float32) * np.float32(MU_WATER_PER_MM / 1000.0)
    mu += np.float32(MU_WATER_PER_MM)
    np.maximum(mu, 0.0, out=mu)
    return mu.sum(axis=1, dtype=np.float32) * np.float32(spacing_y)


def _film_layout(a: np.ndarray) -> np.ndarray:
    """(X, Z) → (rows, columns) as a PA film is read: rows superior → inferior, columns x ascending
    (patient right → left in LPS)."""
    return np.ascontiguousarray(a.T[::-1])


def film_shape(shape) -> tuple[int, int]:
    """(rows, columns) of the radiograph of a phantom of ``shape`` (X, Y, Z): (Z, X)."""
    return int(shape[2]), int(shape[0])


def expose(integrals: np.ndarray, pixel_spacing: tuple[float, float], rng: np.random.Generator | None,
           detector: Detector = Detector()) -> np.ndarray:
    """The detector's 12-bit image of line integrals laid out as a film (rows, columns)."""
    from scipy.ndimage import gaussian_filter

    primary = np.exp(-integrals.astype(np.float64))
    sigma = [detector.scatter_sigma_mm / s for s in pixel_spacing]
    signal = primary + detector.scatter_fraction * gaussian_filter(primary, sigma, mode="nearest")
    if detector.photons and rng is not None:
        signal = signal + rng.standard_normal(signal.shape) * np.sqrt(signal / detector.photons)
    if detector.blur_pixels:
        signal = gaussian_filter(signal, detector.blur_pixels, mode="nearest")
    density = -np.log(np.maximum(signal, 1e-6))  # the log of the transmission: attenuation seen
    body = integrals > 0.5  # rays through the body (air alone attenuates ~nothing)
    centre = float(np.median(density[body])) if body.any() else float(np.median(density))
    shown = 1.0 / (1.0 + np.exp(-detector.gamma * (density - centre)))  # characteristic curve
    return np.round(shown * (2 ** BITS - 1)).astype(np.uint16)


def nodule_boxes(mask: np.ndarray) -> list[dict]:
    """Bounding boxes (half-open) of each nodule id present in ``mask``."""
    from scipy.ndimage import find_objects

    boxes = []
    for k, found in enumerate(find_objects(mask), start=1):
        if found is not None:
            (r0, r1), (c0, c1) = ((s.start, s.stop) for s in found)
            boxes.append({"id": k, "row0": r0, "col0": c0, "row1": r1, "col1": c1})
    return boxes


def radiograph(hu: np.ndarray, label: np.ndarray, spacing: tuple[float, float, float], seed: int | None = 0,
               detector: Detector = Detector()) -> Radiograph:
    """The PA radiograph of an (X, Y, Z) HU volume in LPS order with its (X, Y, Z) nodule labels.

    Args:
        hu: Hounsfield units (any numeric dtype).
        label: nodule ids (0 background), the volume's shape.
        spacing: voxel size (x, y, z) mm.
        seed: seeds the quantum noise; None for a noiseless image.
        detector: the detector and film response.
    """
    hu, label = np.asarray(hu), np.asarray(label)
    if hu.ndim != 3 or label.shape != hu.shape:
        raise ValueError(f"need an (X, Y, Z) volume and labels of its shape, got {hu.shape} and {label.shape}")
    pixel_spacing = (float(spacing[2]), float(spacing[0]))
    rng = None if seed is None else np.random.default_rng(seed)
    image = expose(_film_layout(line_integrals(hu, float(spacing[1]))), pixel_spacing, rng, detector)
    mask = _film_layout(label.max(axis=1)).astype(np.uint8)
    return Radiograph(image, pixel_spacing, mask, nodule_boxes(mask))


def phantom_radiograph(index: int, cohort_seed: int = 0, shape: tuple[int, int, int] = (256, 256, 128),
                       detector: Detector = Detector()) -> Radiograph:
    """The radiograph of phantom patient ``index`` of cohort ``cohort_seed`` (noise seeded by both)."""
    from semgen_ray.phantoms.generate import generate_patient

    volume, label, _ = generate_patient(index, cohort_seed, shape)
    seed = int(np.random.SeedSequence([cohort_seed, index, 2]).generate_state(1)[0])
    return radiograph(volume.array, label, volume.spacing, seed, detector)


__all__ = ["BITS", "MU_WATER_PER_MM", "Detector", "Radiograph", "expose", "film_shape", "line_integrals", "nodule_boxes",
           "phantom_radiograph", "radiograph"]
