"""med-toyworld: seeded synthetic CT-like volumes with one finding each, a report, and concept spans.

Why it exists: RadCLIP (2D and 3D), ConceptCLIP and PTUnifier need image-report data that ships with the
code, trains tiny models on a CPU in seconds, and still measures something. Every report is determined by
what the image shows: the finding's kind (read from its intensity against the organ), its size class and
millimetre diameter, and its location (organ, side, lobe); a case without a finding says so, naming the
organ visible in its slice.

The anatomy, in the `Volume` axes (D slices inferior → superior, H posterior → anterior, W patient's
left → right; see `vlzoo.medical.data.volumes`):
- a body ellipse of soft tissue (20 HU) in air (-1000 HU), a vertebra (700 HU) at the back;
- the superior half of the slices is the chest: two lungs (-820 HU) and the heart (40 HU) between them;
- the inferior half is the upper abdomen: the liver (60 HU) on the patient's right, whose part medial of
  a vertical split line is its left lobe, and the spleen (45 HU) on the left.
- one spherical finding (80 % of cases): a solid (35 HU) or calcified (450 HU) nodule in the right or
  left lung, or a hypodense (5 HU) or hyperdense (150 HU) lesion in the right or left lobe of the liver;
  small (10-16 mm) or large (24-34 mm); Gaussian noise (σ 12 HU) over everything.

`write_med_toyworld(out_dir, ...)` writes, for splits train / val / test:
- `volumes/<split>/<id>.nii.gz`: the volume in HU (int16) as a real NIfTI file: spacing in the header and
  an affine of the common LPS-like storage (first two axes flipped), so readers must reorient to RAS;
- `slices/<split>/<id>.png`: the axial slice through the finding's centre (a random slice of the chest or
  the abdomen without one), soft-tissue window, radiological view (`radiological_view`);
- `med-toyworld-2d.json`: Karpathy split JSON of the slices, 3 report sentences each (`KarpathySplits`);
- `med-toyworld-3d.jsonl`: volume-report pairs, kind `volume-reports` (`VolumeReports`);
- `med-toyworld-concepts.jsonl`: MedConcept-style captions of the slices with `umls_meta_info` spans of
  invented concept ids (`CONCEPT_IDS`), kind `medconcept` (`MedConceptPairs`);
- `classes/<finding>/<id>.png`: the test slices by finding (`no_focal_lesion` included), for zero-shot
  classification (`ImageFolderClasses`).
Every entry carries its ground truth under `"case"`. Identical arguments give byte-identical files.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlzoo.core.data import write_karpathy_json
from vlzoo.core.errors import ConfigError
from vlzoo.medical.data.volumes import WINDOW_PRESETS, apply_window, radiological_view

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
DISPLAY_WINDOW = "soft_tissue"
HU = {
    "air": -1000.0,
    "body": 20.0,
    "bone": 700.0,
    "lung": -820.0,
    "heart": 40.0,
    "liver": 60.0,
    "spleen": 45.0,
    "solid nodule": 35.0,
    "calcified nodule": 450.0,
    "hypodense lesion": 5.0,
    "hyperdense lesion": 150.0,
}
NOISE_HU = 12.0
FINDINGS_BY_REGION = {
    "chest": ("solid nodule", "calcified nodule"),
    "abdomen": ("hypodense lesion", "hyperdense lesion"),
}
LOCATIONS_BY_REGION = {
    "chest": ("right lung", "left lung"),
    "abdomen": ("right lobe of the liver", "left lobe of the liver"),
}
REGION_ORGANS = {"chest": "lungs", "abdomen": "liver"}  # what a report without a finding names
SIZES_MM = {"small": (10, 16), "large": (24, 34)}  # diameters, inclusive
NO_FINDING = "no focal lesion"
P_NO_FINDING = 0.2
CONCEPT_IDS: dict[str, str] = {
    NO_FINDING: "C9000000",
    "hypodense lesion": "C9000001",
    "hyperdense lesion": "C9000002",
    "solid nodule": "C9000003",
    "calcified nodule": "C9000004",
    "right lung": "C9000011",
    "left lung": "C9000012",
    "right lobe of the liver": "C9000013",
    "left lobe of the liver": "C9000014",
    "lungs": "C9000021",
    "liver": "C9000022",
}
CLASSES = (
    "calcified_nodule",
    "hyperdense_lesion",
    "hypodense_lesion",
    "no_focal_lesion",
    "solid_nodule",
)

# Organ ellipses in units of the half field of view: u towards the patient's right, v towards anterior.
_BODY = ((0.0, 0.0), (0.85, 0.62))
_VERTEBRA = ((0.0, -0.45), (0.09, 0.09))
_LUNGS = {"right lung": ((0.42, 0.02), (0.30, 0.45)), "left lung": ((-0.42, 0.02), (0.28, 0.45))}
_HEART = ((-0.05, 0.22), (0.16, 0.17))
_LIVER = ((0.25, 0.05), (0.55, 0.45))
_LIVER_SPLIT_U = 0.12  # the lobes' boundary: lateral of it the right lobe, medial the left lobe
_SPLEEN = ((-0.6, -0.05), (0.15, 0.25))
_MARGIN_MM = 3.0  # a finding stays this far inside its organ (and lobe, and slab)


@dataclass(frozen=True)
class Case:
    """The ground truth of one case. `center_mm` is the finding's RAS position (mm, volume centre at 0),
    `center_index` its `(d, h, w)` voxel, `slice` the `d` of the 2D slice."""

    region: str
    finding: str
    location: str | None
    size: str | None
    diameter_mm: int | None
    center_mm: tuple[float, float, float] | None
    center_index: tuple[int, int, int] | None
    slice: int

    @property
    def class_name(self) -> str:
        return self.finding.replace(" ", "_")


# ------------------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class _Grid:
    """Voxel-centre coordinates in mm (RAS, volume centre at the origin) of a `(D, H, W)` volume."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def half_fov(self) -> tuple[float, float]:  # (x, y) in mm
        return self.shape[2] * self.spacing[2] / 2, self.shape[1] * self.spacing[1] / 2

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z, y, x = ((np.arange(n) - (n - 1) / 2) * s for n, s in zip(self.shape, self.spacing))
        return z, y, x

    def index_of(self, point_mm: tuple[float, float, float]) -> tuple[int, int, int]:
        x, y, z = point_mm
        coords = (z, y, x)
        return tuple(  # type: ignore[return-value]
            int(np.clip(round(c / s + (n - 1) / 2), 0, n - 1))
            for c, s, n in zip(coords, self.spacing, self.shape)
        )

    def ellipse_mm(self, ellipse) -> tuple[tuple[float, float], tuple[float, float]]:
        (cu, cv), (au, av) = ellipse
        hx, hy = self.half_fov
        return (cu * hx, cv * hy), (au * hx, av * hy)

    def slab(self, region: str) -> tuple[float, float]:
        """z range (mm, between the voxel-centre boundaries) of the chest (superior) or abdomen half."""
        z, _, _ = self.axes()
        half = self.shape[0] // 2
        lo, hi = (z[half], z[-1]) if region == "chest" else (z[0], z[half - 1])
        return float(lo), float(hi)


def _in_ellipse(x: np.ndarray, y: np.ndarray, centre, axes) -> np.ndarray:
    return ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 <= 1.0


def _sample_centre(grid: _Grid, region: str, location: str, radius: float, rng: np.random.Generator):
    """A finding centre (x, y, z mm) whose sphere lies inside its organ, lobe and slab (rejection sampling,
    64 candidates per round)."""
    organ = _LUNGS[location] if region == "chest" else _LIVER
    (cx, cy), (ax, ay) = grid.ellipse_mm(organ)
    inner = (ax - radius - _MARGIN_MM, ay - radius - _MARGIN_MM)
    z_lo, z_hi = grid.slab(region)
    z_lo, z_hi = z_lo + radius * 0.5, z_hi - radius * 0.5  # the sphere's bulk stays within the slab
    split_x = _LIVER_SPLIT_U * grid.half_fov[0]
    if min(inner) <= 0 or z_hi < z_lo:
        raise ConfigError(
            f"med-toyworld: a {2 * radius:.0f} mm finding doesn't fit in the {location} of a volume of shape "
            f"{grid.shape} and spacing {grid.spacing}; use more voxels or a larger spacing"
        )
    for _ in range(200):
        x = rng.uniform(cx - inner[0], cx + inner[0], 64)
        y = rng.uniform(cy - inner[1], cy + inner[1], 64)
        ok = _in_ellipse(x, y, (cx, cy), inner)
        if location == "right lobe of the liver":
            ok &= x >= split_x + radius + _MARGIN_MM
        elif location == "left lobe of the liver":
            ok &= x <= split_x - radius - _MARGIN_MM
        hits = np.flatnonzero(ok)
        if hits.size:
            i = hits[0]
            return float(x[i]), float(y[i]), float(rng.uniform(z_lo, z_hi))
    raise ConfigError(f"med-toyworld: no room for a {2 * radius:.0f} mm finding in the {location}")


def make_case(
    seed: int, split: str, index: int, shape: tuple[int, int, int], spacing: tuple[float, float, float]
) -> tuple[Case, np.random.Generator]:
    """The ground truth of case `index` of `split` (its own seeded generator, returned to render with)."""
    rng = np.random.default_rng([seed, _split_id(split), index])
    grid = _Grid(shape, spacing)
    region = ("chest", "abdomen")[int(rng.integers(2))]
    if rng.random() < P_NO_FINDING:
        z_lo, z_hi = grid.slab(region)
        d = grid.index_of((0.0, 0.0, float(rng.uniform(z_lo, z_hi))))[0]
        return Case(region, NO_FINDING, None, None, None, None, None, d), rng
    finding = FINDINGS_BY_REGION[region][int(rng.integers(2))]
    location = LOCATIONS_BY_REGION[region][int(rng.integers(2))]
    size = ("small", "large")[int(rng.integers(2))]
    lo, hi = SIZES_MM[size]
    diameter = int(rng.integers(lo, hi + 1))
    centre = _sample_centre(grid, region, location, diameter / 2, rng)
    centre = tuple(round(c, 2) for c in centre)
    index_ = grid.index_of(centre)  # type: ignore[arg-type]
    return Case(region, finding, location, size, diameter, centre, index_, index_[0]), rng  # type: ignore[arg-type]


def render_volume(case: Case, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """`[D, H, W]` float32 whole HU of a case: organs by slab, the finding, then noise (vectorized masks)."""
    z, y, x = grid.axes()
    Y, X = np.meshgrid(y, x, indexing="ij")  # in-plane [H, W]
    plane = {}
    for region in ("chest", "abdomen"):
        image = np.full(Y.shape, HU["air"], np.float32)
        image[_in_ellipse(X, Y, *grid.ellipse_mm(_BODY))] = HU["body"]
        if region == "chest":
            for lung in _LUNGS.values():
                image[_in_ellipse(X, Y, *grid.ellipse_mm(lung))] = HU["lung"]
            image[_in_ellipse(X, Y, *grid.ellipse_mm(_HEART))] = HU["heart"]
        else:
            image[_in_ellipse(X, Y, *grid.ellipse_mm(_LIVER))] = HU["liver"]
            image[_in_ellipse(X, Y, *grid.ellipse_mm(_SPLEEN))] = HU["spleen"]
        image[_in_ellipse(X, Y, *grid.ellipse_mm(_VERTEBRA))] = HU["bone"]
        plane[region] = image
    half = grid.shape[0] // 2
    volume = np.concatenate(
        [np.repeat(plane["abdomen"][None], half, 0), np.repeat(plane["chest"][None], grid.shape[0] - half, 0)]
    )
    if case.center_mm is not None:
        cx, cy, cz = case.center_mm
        radius = case.diameter_mm / 2  # type: ignore[operator]
        inside = (z[:, None, None] - cz) ** 2 + (Y[None] - cy) ** 2 + (X[None] - cx) ** 2 <= radius**2
        volume[inside] = HU[case.finding]
    volume += rng.normal(0.0, NOISE_HU, volume.shape).astype(np.float32)
    return np.round(volume)  # whole HU, as the int16 NIfTI stores them: the PNG shows exactly the file


def storage_affine(grid: _Grid) -> np.ndarray:
    """The NIfTI affine of the stored array `vol.transpose(2, 1, 0)[::-1, ::-1, :]`: LPS-like axes (x and
    y decreasing with the index), voxel-centre world coordinates as in `_Grid.axes` (volume centre at 0)."""
    (D, H, W), (sz, sy, sx) = grid.shape, grid.spacing
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [(W - 1) / 2 * sx, (H - 1) / 2 * sy, -(D - 1) / 2 * sz]
    return affine


def nifti_bytes(volume_hu: np.ndarray, grid: _Grid) -> bytes:
    """The `.nii.gz` bytes of a `[D, H, W]` HU volume: int16, LPS-like storage, gzip without a timestamp
    (so the same volume always gives the same file)."""
    import nibabel as nib

    stored = np.round(volume_hu.transpose(2, 1, 0)[::-1, ::-1, :]).astype(np.int16)
    image = nib.Nifti1Image(np.ascontiguousarray(stored), storage_affine(grid))
    image.header.set_xyzt_units("mm")
    image.header.set_data_dtype(np.int16)
    image.set_qform(storage_affine(grid), code=1)
    image.set_sform(storage_affine(grid), code=1)
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)


def display_slice(volume_hu: np.ndarray, d: int) -> np.ndarray:
    """Slice `d` as an 8-bit image: soft-tissue window, radiological view."""
    shown = apply_window(radiological_view(volume_hu[d]), WINDOW_PRESETS[DISPLAY_WINDOW])
    return np.round(shown * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- reports


def canonical_report(case: Case, volume: bool = False) -> tuple[str, list[tuple[str, int, int]]]:
    """The case's one-sentence report and its concept spans `(concept name, start, end)`. Without a finding
    a slice's report names the organ the slice shows; a volume's (`volume=True`) names both."""
    if case.finding == NO_FINDING:
        organs = ("lungs", "liver") if volume else (REGION_ORGANS[case.region],)
        text = f"{NO_FINDING} in the {' or '.join(organs)}."
        spans = [(NO_FINDING, 0, len(NO_FINDING))]
        for organ in organs:
            start = text.index(organ)
            spans.append((organ, start, start + len(organ)))
        return text, spans
    text = f"a {case.diameter_mm} mm {case.finding} in the {case.location}."
    spans = []
    for name in (case.finding, case.location):
        start = text.index(name)  # type: ignore[arg-type]
        spans.append((name, start, start + len(name)))  # type: ignore[arg-type]
    return text, spans  # type: ignore[return-value]


_PARAPHRASES = (
    "{finding} of {mm} mm in the {location}.",
    "there is a {size} {finding} in the {location}.",
    "{location}: {size} {finding} measuring {mm} mm.",
    "a {size} {finding} is seen in the {location}.",
)
_NO_FINDING_PARAPHRASES = {
    "lungs": (
        "the lungs show no focal lesion.",
        "normal lungs, no focal lesion.",
        "no lesion is seen in the lungs.",
    ),
    "liver": (
        "the liver shows no focal lesion.",
        "normal liver, no focal lesion.",
        "no lesion is seen in the liver.",
    ),
    "volume": (
        "the lungs and liver show no focal lesion.",
        "normal lungs and liver, no focal lesion.",
        "no lesion is seen in the lungs or liver.",
    ),
}


def reports_for(case: Case, rng: np.random.Generator, n: int = 3, volume: bool = False) -> list[str]:
    """`n` report sentences: the canonical one, then distinct paraphrases drawn with `rng`."""
    first, _ = canonical_report(case, volume)
    if case.finding == NO_FINDING:
        pool = list(_NO_FINDING_PARAPHRASES["volume" if volume else REGION_ORGANS[case.region]])
    else:
        pool = [
            t.format(finding=case.finding, mm=case.diameter_mm, location=case.location, size=case.size)
            for t in _PARAPHRASES
        ]
    order = rng.permutation(len(pool))
    return [first, *[pool[i] for i in order[: max(0, n - 1)]]]


# --------------------------------------------------------------------------------------------- writer


@dataclass(frozen=True)
class MedToyWorldFiles:
    """Where `write_med_toyworld` put each view of the data."""

    root: Path
    karpathy_2d: Path
    volume_reports: Path
    concepts: Path
    classes: Path


def _split_id(split: str) -> int:
    return SPLIT_IDS.get(split, zlib.crc32(split.encode()) + len(SPLIT_IDS))


def _report_tokens(report: str) -> list[str]:
    # A report sentence ends with a full stop; its Karpathy tokens leave it out.
    return report.rstrip(".").split()


def write_med_toyworld(
    out_dir: str | os.PathLike,
    n_train: int = 800,
    n_val: int = 100,
    n_test: int = 200,
    volume_shape: tuple[int, int, int] | list[int] = (16, 64, 64),
    spacing: tuple[float, float, float] | list[float] = (8.0, 4.0, 4.0),
    seed: int = 0,
    reports_per_case: int = 3,
) -> MedToyWorldFiles:
    """Write med-toyworld under `out_dir` (the module docstring lists the files); returns their paths.

    `volume_shape` is `(D, H, W)` voxels and `spacing` `(d, h, w)` mm, the `Volume` order.
    """
    shape = tuple(int(v) for v in volume_shape)
    spacing_ = tuple(float(v) for v in spacing)
    if len(shape) != 3 or min(shape) < 4 or shape[0] % 2 or len(spacing_) != 3 or min(spacing_) <= 0:
        raise ConfigError(
            f"med-toyworld: volume_shape is (D, H, W) with D even and every side ≥ 4, spacing 3 positive mm; "
            f"got {volume_shape}, {spacing}"
        )
    grid = _Grid(shape, spacing_)  # type: ignore[arg-type]
    root = Path(out_dir)
    images: list[dict[str, Any]] = []
    volume_lines: list[str] = []
    concept_lines: list[str] = []
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n <= 0:
            continue
        for sub in ("volumes", "slices"):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            case, rng = make_case(seed, split, i, shape, spacing_)  # type: ignore[arg-type]
            volume = render_volume(case, grid, rng)
            reports = reports_for(case, rng, reports_per_case)
            volume_reports = reports_for(case, rng, reports_per_case, volume=True)
            case_id = f"{split}/{i:06d}"
            volume_path = f"volumes/{split}/{i:06d}.nii.gz"
            slice_path = f"slices/{split}/{i:06d}.png"
            (root / volume_path).write_bytes(nifti_bytes(volume, grid))
            Image.fromarray(display_slice(volume, case.slice), mode="L").save(root / slice_path)
            truth = asdict(case)
            images.append(
                {
                    "filepath": f"slices/{split}",
                    "filename": f"{i:06d}.png",
                    "split": split,
                    "imgid": case_id,
                    "captions": reports,
                    "case": truth,
                }
            )
            volume_lines.append(
                json.dumps(
                    {
                        "id": case_id,
                        "volume": volume_path,
                        "report": volume_reports,
                        "split": split,
                        "case": truth,
                    }
                )
            )
            caption, spans = canonical_report(case)
            meta = [{"umls_cui": CONCEPT_IDS[name], "start_char": s, "end_char": e} for name, s, e in spans]
            concept_lines.append(
                json.dumps(
                    {
                        "id": case_id,
                        "image": slice_path,
                        "caption": caption,
                        "umls_meta_info": meta,
                        "split": split,
                    }
                )
            )
            if split == "test":
                folder = root / "classes" / case.class_name
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{i:06d}.png").write_bytes((root / slice_path).read_bytes())
    files = MedToyWorldFiles(
        root=root,
        karpathy_2d=root / "med-toyworld-2d.json",
        volume_reports=root / "med-toyworld-3d.jsonl",
        concepts=root / "med-toyworld-concepts.jsonl",
        classes=root / "classes",
    )
    for name in CLASSES:  # every class folder exists, even one no test case fell into
        (files.classes / name).mkdir(parents=True, exist_ok=True)
    # The three index files last: the generated-dataset hook takes an existing file for a finished write.
    files.volume_reports.write_text("\n".join(volume_lines) + "\n")
    files.concepts.write_text("\n".join(concept_lines) + "\n")
    write_karpathy_json(files.karpathy_2d, images, "med-toyworld", tokenize=_report_tokens)
    return files


__all__ = [
    "CLASSES",
    "CONCEPT_IDS",
    "HU",
    "Case",
    "MedToyWorldFiles",
    "canonical_report",
    "make_case",
    "render_volume",
    "reports_for",
    "write_med_toyworld",
]
