"""Tiles/s and peak memory: a large multi-band GeoTIFF cut into model batches by `iter_tiles` (windowed
reads) vs read whole with rasterio and then cut.

The scene: `--size`² pixels, `--bands` uint16 bands, tiled in 512-pixel blocks, deflate-compressed with a
predictor (as Sentinel-2 COGs are), smooth fields plus noise. Both readers produce the same float32
batches `[batch, bands, tile, tile]` of the same tile windows (`tile_windows`, `--overlap`), checked by
comparing a checksum of every batch. Each reader runs in its own fresh subprocess, so that neither sees
the other's allocations; peak memory is the resident-set high-water mark above the process's memory
before the read (see peak_memory.py). Ratio = iter_tiles tiles/s / whole-file tiles/s.

    python benchmarks/remote_sensing_tiles.py                  # 8192², 4 bands, 224-px tiles, batch 32
    python benchmarks/remote_sensing_tiles.py --size 4096 --overlap 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from peak_memory import PeakMemory


def write_scene(path: Path, size: int, bands: int, block: int = 512) -> None:
    """A `size`² GeoTIFF written one block row at a time (the writer never holds the scene either)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": from_origin(300_000, 5_300_000, 10, 10),
        "nodata": 0,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
        "predictor": 2,
        "BIGTIFF": "IF_SAFER",
    }
    rng = np.random.default_rng(0)
    fields = rng.integers(500, 4000, (bands, size // 64 + 1, size // 64 + 1)).astype(np.uint16)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, block):
            height = min(block, size - row)
            # 64-px fields of constant reflectance plus sensor noise
            rows = np.repeat(fields[:, row // 64 : (row + height - 1) // 64 + 1], 64, axis=1)[:, :height]
            plane = np.repeat(rows, 64, axis=2)[:, :, :size]
            noise = rng.integers(0, 60, plane.shape, dtype=np.uint16)
            dst.write(plane + noise, window=Window(0, row, size, height))


def _batches_from_tiles(path: str, tile: int, overlap: int, batch: int):
    import torch

    from vlzoo.remote_sensing import iter_tiles

    pending = []
    for geo in iter_tiles(path, tile, overlap=overlap):
        pending.append(geo.image)
        if len(pending) == batch:
            yield torch.from_numpy(np.stack(pending))
            pending = []
    if pending:
        yield torch.from_numpy(np.stack(pending))


def _batches_from_whole(path: str, tile: int, overlap: int, batch: int):
    import rasterio
    import torch

    from vlzoo.remote_sensing import tile_windows

    with rasterio.open(path) as src:
        scene = src.read()  # the whole scene, in its own dtype (uint16): the least a whole read needs
    windows = tile_windows(scene.shape[1], scene.shape[2], tile, overlap)
    for start in range(0, len(windows), batch):
        cuts = [
            scene[:, int(w.row_off) : int(w.row_off + w.height), int(w.col_off) : int(w.col_off + w.width)]
            for w in windows[start : start + batch]
        ]
        yield torch.from_numpy(np.stack(cuts).astype(np.float32))


def child(args: argparse.Namespace) -> None:
    import rasterio  # noqa: F401  (imports before the measurement: only the reading is measured)
    import torch

    import vlzoo.remote_sensing  # noqa: F401

    torch.set_num_threads(1)
    reader = _batches_from_tiles if args.child == "tiles" else _batches_from_whole
    checksum, tiles = 0.0, 0
    with PeakMemory() as memory:
        start = time.perf_counter()
        for batch in reader(args.path, args.tile, args.overlap, args.batch):
            tiles += batch.shape[0]
            checksum += float(torch.sum(batch, dtype=torch.float64))
        seconds = time.perf_counter() - start
    result = {"tiles": tiles, "seconds": seconds, "peak_mib": memory.peak_mib, "checksum": checksum}
    print(json.dumps(result))


def run_child(name: str, args: argparse.Namespace, path: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--path",
        str(path),
        "--tile",
        str(args.tile),
        "--overlap",
        str(args.overlap),
        "--batch",
        str(args.batch),
    ]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=8192, help="scene side in pixels")
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--tile", type=int, default=224)
    parser.add_argument("--overlap", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32, help="tiles per model batch")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each reader (median reported)")
    parser.add_argument("--child", choices=["tiles", "whole"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scene.tif"
        start = time.perf_counter()
        write_scene(path, args.size, args.bands)
        raw_mib = args.size**2 * args.bands * 2 / 2**20
        print(
            f"scene {args.size}×{args.size}×{args.bands} uint16 ({raw_mib:.0f} MiB raw, "
            f"{path.stat().st_size / 2**20:.0f} MiB on disk), written in {time.perf_counter() - start:.1f} s; "
            f"tiles {args.tile} px, overlap {args.overlap}, batches of {args.batch}"
        )
        runs: dict[str, list[dict]] = {"tiles": [], "whole": []}
        for _ in range(args.repeats):  # alternate, so that a change in machine load affects both alike
            for name in runs:
                runs[name].append(run_child(name, args, path))
    results = {}
    for name, label in (("tiles", "iter_tiles (windowed)"), ("whole", "whole file, then cut")):
        ordered = sorted(runs[name], key=lambda r: r["seconds"])
        median = ordered[len(ordered) // 2]
        results[name] = median
        print(
            f"{label:24s} {median['tiles']} tiles in {median['seconds']:.2f} s: "
            f"{median['tiles'] / median['seconds']:.0f} tiles/s, peak {median['peak_mib']:.0f} MiB"
        )
    same = results["tiles"]["checksum"] == results["whole"]["checksum"]
    ratio = (results["tiles"]["tiles"] / results["tiles"]["seconds"]) / (
        results["whole"]["tiles"] / results["whole"]["seconds"]
    )
    memory = results["whole"]["peak_mib"] / max(results["tiles"]["peak_mib"], 1e-6)
    print(f"ratio tiles/s (windowed / whole): {ratio:.2f}; peak memory whole / windowed: {memory:.1f}x")
    print(f"same batches: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
