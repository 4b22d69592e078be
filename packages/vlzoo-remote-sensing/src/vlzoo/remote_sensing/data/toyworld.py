"""rs-toyworld: small georeferenced multispectral scenes, seeded, written as real GeoTIFFs with captions.

Why it exists: the remote-sensing models, their tests and the CPU recipes need data that ships with the
code, exercises the real file path (GeoTIFF through rasterio: uint16 reflectances, a NIR band, nodata, a
CRS and a transform per scene) and can be learned by a tiny model in seconds. Each scene is a
background (meadow or bare soil, not named by the captions) with two land-cover patches: the *main* one
(its class is the scene class, in the filename `<class>_<n>.tif`) at one of five positions, and a smaller
*second* one of another class in another corner. The five captions each name the main class and its
position, some also the second patch: "a lake in the upper left next to a forest". So retrieval needs
the class *and* the position, and scene classification the main class.

Classes differ in spectrum and texture as real land cover does: water is dark with almost no NIR, forest
and crops are bright in NIR, farmland is striped into parcels, a residential area is a grid of small red
roofs, an industrial area large bright roofs on asphalt, a road crossing two thin asphalt lines. Every
value is reflectance × 10000 (Sentinel-2 L2A's quantification), bands named like Sentinel-2's (B02, B03,
B04, B08, B11, B12: blue, green, red, NIR, SWIR); 0 is nodata (a quarter of the scenes lose an edge
strip, as scenes at a swath border do).

- `generate_scene(seed, split, index, ...)`: the pixels, scene record and captions of one scene; random
  access, each scene from its own seed.
- `write_rs_toyworld(out_dir, ...)`: `out_dir/<split>/<class>_<n>.tif` plus the Karpathy JSON
  `out_dir/rs-toyworld.json` (read it with `RSKarpathySplits`, data kind `rs-karpathy`).
- `write_rs_toyworld_classes(root, ...)`: a scene-classification folder `root/<class>/<class>_<n>.tif`.

Scenes tile a grid in EPSG:32633 (UTM 33N) at 10 m per pixel: scene i of a split sits right of scene
i - 1, 32 scenes a row, each split in its own band of rows.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.transform import from_origin

from vlzoo.core.data import write_karpathy_json
from vlzoo.core.errors import ConfigError
from vlzoo.remote_sensing.data.geotiff import BandStats

__all__ = [
    "BAND_NAMES",
    "CLASSES",
    "POSITIONS",
    "RS_TOYWORLD_CRS",
    "RSScene",
    "generate_scene",
    "rs_toyworld_band_stats",
    "write_rs_toyworld",
    "write_rs_toyworld_classes",
]

BAND_NAMES = ("B02", "B03", "B04", "B08", "B11", "B12")  # blue, green, red, NIR, SWIR 1.6 µm, SWIR 2.2 µm
RS_TOYWORLD_CRS = "EPSG:32633"
PIXEL_SIZE = 10.0  # metres
ORIGIN = (300_000.0, 5_300_000.0)  # upper-left corner of scene 0 of the train split (easting, northing)
GRID_COLUMNS = 32
SPLIT_ROWS = 500  # grid rows reserved per split, so that splits never overlap on the map
NODATA = 0
SPLIT_IDS = {"train": 0, "val": 1, "test": 2, "classes": 3}

# Reflectance × 10000 per band of BAND_NAMES: typical spectra of each surface.
SIGNATURES: dict[str, tuple[int, ...]] = {
    "meadow": (450, 800, 600, 3200, 2200, 1200),
    "soil": (1100, 1400, 1800, 2500, 3000, 2400),
    "forest": (250, 500, 300, 3800, 1600, 700),
    "water": (700, 650, 400, 150, 80, 50),
    "crop": (350, 900, 450, 4600, 2000, 900),
    "fallow": (1200, 1500, 2000, 2600, 3100, 2500),
    "roof": (900, 1000, 1900, 2100, 2300, 2000),
    "metal_roof": (2600, 2700, 2800, 2900, 3000, 2800),
    "asphalt": (800, 850, 900, 1100, 1300, 1200),
}
BACKGROUNDS = ("meadow", "soil")
CLASSES = ("farmland", "forest", "industrial", "lake", "residential", "road")
# How captions name each class: one phrase each, holding the class word, so that prompts like "a satellite
# image of forest." meet words the text tower has seen. (Synonyms, tried, made a tiny text tower need
# about 1.5 times the steps to reach the same recall: the variety here is in the sentence templates.)
PHRASES: dict[str, str] = {
    "farmland": "farmland",
    "forest": "a forest",
    "industrial": "an industrial area",
    "lake": "a lake",
    "residential": "a residential area",
    "road": "a road crossing",
}
# Patch centres as fractions of the scene side (x right, y down).
POSITIONS: dict[str, tuple[float, float]] = {
    "upper left": (0.27, 0.27),
    "upper right": (0.73, 0.27),
    "lower left": (0.27, 0.73),
    "lower right": (0.73, 0.73),
    "centre": (0.5, 0.5),
}
CORNERS = ("upper left", "upper right", "lower left", "lower right")
CANONICAL = "{m} in the {p} next to {s}"
TEMPLATES = (
    "a satellite image of {m} in the {p}",
    "{s} and {m} in the {p}",
    "an aerial view with {m} in the {p} of the scene",
    "there is {m} in the {p} and {s} in the {q}",
    "{m} lies in the {p} of the image",
    "the {p} is covered by {m}",
)
MAIN_RADIUS, SECOND_RADIUS = 0.23, 0.10  # half-extents as fractions of the scene side


@dataclass(frozen=True)
class RSScene:
    """The ground truth of one scene: classes, positions (names and pixel centres), sizes, nodata edge."""

    class_name: str
    position: str
    second: str
    second_position: str
    background: str
    centre: tuple[float, float]
    radius: float
    second_centre: tuple[float, float]
    second_radius: float
    nodata_edge: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------- scenes


def _split_id(split: str) -> int:
    return SPLIT_IDS.get(split, zlib.crc32(split.encode()) % 1000 + len(SPLIT_IDS))


def _draw_scene(rng: np.random.Generator, size: int, main: str) -> RSScene:
    position = list(POSITIONS)[rng.integers(len(POSITIONS))]
    second = str(rng.choice([c for c in CLASSES if c != main]))
    second_position = str(rng.choice([c for c in CORNERS if c != position]))
    jitter = rng.uniform(-0.03, 0.03, 4) * size
    cx, cy = (np.asarray(POSITIONS[position]) * size + jitter[:2]).round(2)
    sx, sy = (np.asarray(POSITIONS[second_position]) * size + jitter[2:]).round(2)
    radius = round(float(MAIN_RADIUS * size * rng.uniform(0.92, 1.08)), 2)
    second_radius = round(float(SECOND_RADIUS * size * rng.uniform(0.9, 1.1)), 2)
    edge = str(rng.choice(["top", "bottom", "left", "right"])) if rng.random() < 0.25 else None
    return RSScene(
        class_name=main,
        position=position,
        second=second,
        second_position=second_position,
        background=BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
        centre=(float(cx), float(cy)),
        radius=radius,
        second_centre=(float(sx), float(sy)),
        second_radius=second_radius,
        nodata_edge=edge,
    )


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres
    return ys, xs


def _layers(cls: str, cx: float, cy: float, r: float, size: int, rng: np.random.Generator):
    """(mask, surface) pairs painting one patch of class `cls`, in order."""
    ys, xs = _grid(size)
    dx, dy = xs - cx, ys - cy
    square = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if cls == "lake":
        rx, ry = r * rng.uniform(0.8, 1.05, 2)
        return [((dx / rx) ** 2 + (dy / ry) ** 2 <= 1.0, "water")]
    if cls == "forest":  # a disc with a ragged edge
        theta = np.arctan2(dy, dx)
        edge = r * (1.0 + 0.12 * np.sin(5 * theta + rng.uniform(0, 2 * np.pi)))
        return [(np.hypot(dx, dy) <= edge, "forest")]
    if cls == "farmland":  # parcels in stripes of crop and fallow land
        along = xs if rng.random() < 0.5 else ys
        stripes = (np.floor(along / 4.0) % 2).astype(bool)
        return [(square, "crop"), (square & stripes, "fallow")]
    if cls == "residential":  # a grid of small red roofs in gardens
        roofs = (np.mod(dx, 6.0) < 3.0) & (np.mod(dy, 6.0) < 3.0)
        return [(square, "meadow"), (square & roofs, "roof")]
    if cls == "industrial":  # two large bright roofs on asphalt
        halls = (np.abs(dx) >= 1.5) & (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.7 * r)
        return [(square, "asphalt"), (square & halls, "metal_roof")]
    if cls == "road":  # two roads crossing at the patch centre
        cross = square & ((np.abs(dx) <= 1.6) | (np.abs(dy) <= 1.6))
        return [(cross, "asphalt")]
    raise ConfigError(f"rs-toyworld: unknown class {cls!r}")


def render(scene: RSScene, size: int, bands: int, rng: np.random.Generator) -> np.ndarray:
    """`[bands, size, size]` uint16 reflectance × 10000, 0 where nodata."""
    spectra = {k: np.asarray(v[:bands], np.float32) for k, v in SIGNATURES.items()}
    image = np.broadcast_to(spectra[scene.background][:, None, None], (bands, size, size)).copy()
    patches = [
        (scene.second, *scene.second_centre, scene.second_radius),
        (scene.class_name, *scene.centre, scene.radius),  # the main patch last: it is never covered
    ]
    for cls, cx, cy, r in patches:
        for mask, surface in _layers(cls, cx, cy, r, size, rng):
            image[:, mask] = spectra[surface][:, None]
    texture = rng.normal(1.0, 0.05, (1, size, size)) * rng.normal(1.0, 0.02, (bands, size, size))
    image *= (rng.uniform(0.9, 1.1) * texture).astype(np.float32)  # illumination and sensor noise
    out = np.clip(np.rint(image), 1, 65535).astype(np.uint16)
    strip = int(rng.integers(2, 6))
    edges = {"top": np.s_[:, :strip, :], "bottom": np.s_[:, -strip:, :]}
    edges |= {"left": np.s_[:, :, :strip], "right": np.s_[:, :, -strip:]}
    if scene.nodata_edge is not None:
        out[edges[scene.nodata_edge]] = NODATA
    return out


def captions_for(scene: RSScene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """`n` (at most 7) captions: the canonical sentence first, then distinct templates in a random order."""
    words = {
        "m": PHRASES[scene.class_name],
        "p": scene.position,
        "s": PHRASES[scene.second],
        "q": scene.second_position,
    }
    templates = [CANONICAL, *(TEMPLATES[i] for i in rng.permutation(len(TEMPLATES)))]
    return [t.format(**words) for t in templates[:n]]


def scene_transform(split: str, index: int, image_size: int) -> Affine:
    """Where scene `index` of `split` lies: its pixel → EPSG:32633 transform on the rs-toyworld grid."""
    row = _split_id(split) * SPLIT_ROWS + index // GRID_COLUMNS
    col = index % GRID_COLUMNS
    side = image_size * PIXEL_SIZE
    return from_origin(ORIGIN[0] + col * side, ORIGIN[1] - row * side, PIXEL_SIZE, PIXEL_SIZE)


def generate_scene(
    seed: int,
    split: str,
    index: int,
    image_size: int = 64,
    bands: int = 4,
    main: str | None = None,
) -> tuple[np.ndarray, RSScene, list[str]]:
    """Pixels `[bands, H, W]` uint16, scene record and five captions of scene `index` of `split`. The main
    class cycles through `CLASSES` with the index (balanced splits) unless `main` fixes it."""
    _check(image_size, bands)
    rng = np.random.default_rng([seed, _split_id(split), index])
    scene = _draw_scene(rng, image_size, main or CLASSES[index % len(CLASSES)])
    pixels = render(scene, image_size, bands, rng)
    return pixels, scene, captions_for(scene, rng)


def _check(image_size: int, bands: int) -> None:
    if not 3 <= bands <= len(BAND_NAMES):
        raise ConfigError(f"rs-toyworld: bands must be 3 to {len(BAND_NAMES)}, got {bands}")
    if image_size < 32:
        raise ConfigError(f"rs-toyworld: image_size must be ≥ 32, got {image_size}")


def write_scene(path: Path, pixels: np.ndarray, transform: Affine) -> None:
    """One scene as a GeoTIFF: uint16, deflate, nodata 0, EPSG:32633, Sentinel-2 band names."""
    bands, height, width = pixels.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": "uint16",
        "crs": RS_TOYWORLD_CRS,
        "transform": transform,
        "nodata": NODATA,
        "compress": "deflate",
        "predictor": 2,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
        dst.descriptions = BAND_NAMES[:bands]


# -------------------------------------------------------------------------------------------- writing


def write_rs_toyworld(
    out_dir: str | os.PathLike,
    n_train: int = 1200,
    n_val: int = 200,
    n_test: int = 200,
    image_size: int = 64,
    bands: int = 4,
    seed: int = 0,
) -> Path:
    """Write rs-toyworld as `out_dir/<split>/<class>_<n>.tif` and the Karpathy JSON
    `out_dir/rs-toyworld.json`; returns the JSON's path. Identical arguments give identical files.

    Besides the Karpathy fields, each image entry has `"class_name"` and `"scene"` (an `RSScene` as a
    dict), and the file lists `"classes"`, `"bands"`, `"crs"` and `"band_stats"` (mean/std per band in
    the raw units, for a model's normalization).
    """
    _check(image_size, bands)
    root = Path(out_dir)
    images: list[dict[str, Any]] = []
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n <= 0:
            continue
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels, scene, texts = generate_scene(seed, split, i, image_size, bands)
            filename = f"{scene.class_name}_{i}.tif"
            write_scene(root / split / filename, pixels, scene_transform(split, i, image_size))
            images.append(
                {
                    "filepath": split,
                    "filename": filename,
                    "split": split,
                    "imgid": f"{split}/{i}",
                    "captions": texts,
                    "class_name": scene.class_name,
                    "scene": scene.to_dict(),
                }
            )
    stats = rs_toyworld_band_stats(bands)
    return write_karpathy_json(
        root / "rs-toyworld.json",
        images,
        "rs-toyworld",
        lang="en",
        classes=list(CLASSES),
        bands=list(BAND_NAMES[:bands]),
        crs=RS_TOYWORLD_CRS,
        band_stats={"mean": list(stats.mean), "std": list(stats.std)},
        generator={"image_size": image_size, "bands": bands, "seed": seed},
    )


def write_rs_toyworld_classes(
    root: str | os.PathLike,
    n_per_class: int = 20,
    image_size: int = 64,
    bands: int = 4,
    seed: int = 0,
) -> Path:
    """A scene-classification folder: `root/<class>/<class>_<n>.tif`, the class being the main patch's
    (other scenes than the splits of `write_rs_toyworld`). Returns `root`; read it with `SceneFolder`."""
    _check(image_size, bands)
    root = Path(root)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            index = c * n_per_class + i
            pixels, _, _ = generate_scene(seed, "classes", index, image_size, bands, main=name)
            write_scene(
                root / name / f"{name}_{i}.tif", pixels, scene_transform("classes", index, image_size)
            )
    return root


# Mean and std per band of BAND_NAMES over rs-toyworld's valid pixels (measured on 600 train scenes of
# seed 0; other seeds differ by about 1%): the normalization a model trained on rs-toyworld uses.
_BAND_MEAN = (782.0, 1084.0, 1152.0, 2801.0, 2443.0, 1687.0)
_BAND_STD = (430.0, 407.0, 670.0, 743.0, 663.0, 710.0)


def rs_toyworld_band_stats(bands: int = 4) -> BandStats:
    """Per-band mean/std of rs-toyworld's first `bands` bands, in reflectance × 10000."""
    _check(64, bands)
    return BandStats(_BAND_MEAN[:bands], _BAND_STD[:bands])
