"""Medical volumes: throughput of the 3D data pipeline (and, later, of RadCLIP-3D's forward pass).

Data pipeline: volumes/s through a DataLoader whose workers read a `.nii.gz` CT, reorient it to RAS,
resample it to a target spacing and apply a CT window: `vlzoo.medical.load_volume` (nibabel + MONAI
`Orientation`, vlzoo's separable resampler `vlzoo.medical.data.resample` in place of MONAI's `Spacing`,
`ScaleIntensityRange`) against the reference, the same steps as MONAI's
standard dictionary pipeline (`LoadImaged` → `EnsureChannelFirstd` → `Orientationd` → `Spacingd` →
`ScaleIntensityRanged`), on the same files, workers and float32 output; the outputs are checked equal
first. Volumes are med-toyworld CTs (`write_med_toyworld`) written once into a temporary folder. The two
pipelines alternate within each repeat, so that a change in machine load affects both alike; the median
over repeats is reported. Ratio = vlzoo volumes/s / MONAI volumes/s (> 1: vlzoo is faster).

    python benchmarks/medical_volumes.py                         # 64 volumes of 64×128×128, 2 workers
    python benchmarks/medical_volumes.py --volumes 128 --workers 4 --spacing 2 1 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vlzoo.medical.data import WINDOW_PRESETS, load_volume, write_med_toyworld


def make_volumes(root: Path, n: int, shape: Sequence[int], spacing: Sequence[float]) -> list[Path]:
    """`n` med-toyworld CT volumes (`.nii.gz`, int16 HU, LPS-like storage) under `root`."""
    files = write_med_toyworld(
        root, n_train=n, n_val=0, n_test=0, volume_shape=tuple(shape), spacing=tuple(spacing)
    )
    return sorted((files.root / "volumes" / "train").glob("*.nii.gz"))


class VlzooVolumes(Dataset):
    """`load_volume(path, spacing, window)` per item: `[D, H, W]` float32."""

    def __init__(self, paths: Sequence[Path], spacing: Sequence[float], window: str):
        self.paths, self.spacing, self.window = list(paths), tuple(spacing), window

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(
            load_volume(self.paths[index], spacing=self.spacing, window=self.window).array
        )


def monai_reference(paths: Sequence[Path], spacing: Sequence[float], window: str) -> Dataset:
    """MONAI's standard dictionary pipeline for the same steps; `spacing` in vlzoo's (d, h, w) order."""
    from monai import transforms as mt
    from monai.data import Dataset as MonaiDataset

    center, width = WINDOW_PRESETS[window]
    pipeline = mt.Compose(
        [
            mt.LoadImaged("image", reader="NibabelReader", image_only=True),
            mt.EnsureChannelFirstd("image"),
            mt.Orientationd("image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            mt.Spacingd("image", pixdim=tuple(spacing)[::-1], mode="bilinear", dtype=np.float32),
            mt.ScaleIntensityRanged(
                "image", a_min=center - width / 2, a_max=center + width / 2, b_min=0.0, b_max=1.0, clip=True
            ),
            mt.Lambdad("image", lambda x: x.as_tensor()[0]),  # plain [X, Y, Z] tensor, like vlzoo's
        ]
    )
    return MonaiDataset([{"image": str(p)} for p in paths], transform=pipeline)


def _first(batch: list) -> torch.Tensor:
    item = batch[0]
    return item["image"] if isinstance(item, dict) else item


def check_same_output(ours: Dataset, reference: Dataset, count: int = 4) -> float:
    """The two pipelines compute the same volumes (vlzoo's `[D, H, W]` is MONAI's `[X, Y, Z]` reversed):
    within 1e-4 of the value range, on the first `count` volumes; returns the worst relative difference."""
    worst = 0.0
    for index in range(min(count, len(ours))):
        a, b = ours[index].numpy(), _first([reference[index]]).numpy().transpose(2, 1, 0)
        assert a.shape == b.shape, f"volume {index}: shape {a.shape} vs MONAI's {b.shape}"
        scale = max(float(np.abs(b).max()), 1e-12)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * scale)
        worst = max(worst, float(np.abs(a - b).max()) / scale)
    return worst


def volumes_per_second(dataset: Dataset, workers: int) -> float:
    """One pass over `dataset` through a DataLoader (worker start-up included, as in training)."""
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, collate_fn=_first)
    start = time.perf_counter()
    n = sum(1 for _ in loader)
    return n / (time.perf_counter() - start)


def data_pipeline(args: argparse.Namespace, root: Path) -> dict[str, float]:
    """The data half: vlzoo's load_volume pipeline against MONAI's dictionary pipeline, volumes/s."""
    start = time.perf_counter()
    paths = make_volumes(root, args.volumes, args.shape, args.source_spacing)
    print(f"wrote {len(paths)} volumes of {tuple(args.shape)} voxels in {time.perf_counter() - start:.1f} s")
    ours = VlzooVolumes(paths, args.spacing, args.window)
    reference = monai_reference(paths, args.spacing, args.window)
    worst = check_same_output(ours, reference)
    print(
        f"outputs equal to MONAI's pipeline: worst |vlzoo - MONAI| / max|MONAI| = {worst:.1e} (tolerance 1e-4)"
    )
    print(f"one volume after resampling to {tuple(args.spacing)} mm: {tuple(ours[0].shape)} (D, H, W)")
    runs: dict[str, list[float]] = {"vlzoo load_volume": [], "MONAI dict pipeline": []}
    measures: dict[str, Callable[[], float]] = {
        "vlzoo load_volume": lambda: volumes_per_second(ours, args.workers),
        "MONAI dict pipeline": lambda: volumes_per_second(reference, args.workers),
    }
    for _ in range(args.repeats):
        for name, measure in measures.items():
            runs[name].append(measure())
    result = {name: statistics.median(values) for name, values in runs.items()}
    for name, value in result.items():
        print(f"{name:>22}: {value:7.2f} volumes/s  (runs: {', '.join(f'{v:.2f}' for v in runs[name])})")
    ratio = result["vlzoo load_volume"] / result["MONAI dict pipeline"]
    print(f"ratio vlzoo / MONAI: {ratio:.2f} (goal >= 3: {'OK' if ratio >= 3 else 'MISSED'})")
    return result


def radclip_forward_throughput(
    model_name: str = "radclip-3d-tiny",
    batch: int = 8,
    slices: int = 16,
    repeats: int = 5,
    device: str = "cpu",
) -> dict[str, float]:
    """Model half: volumes/s of RadCLIP-3D's `encode_volume` with the slice encoder run over all B*S slices
    of the batch in one forward pass against one slice at a time (`chunk_size=1`); same weights and volumes,
    embeddings checked equal, best of `repeats`."""
    import vlzoo.core as vz

    torch.manual_seed(0)
    model = vz.create_model(model_name).eval().to(device)
    vision = model.config.vision
    volumes = torch.randn(batch, slices, vision.in_chans, vision.image_size, vision.image_size, device=device)
    mask = torch.ones(batch, slices, dtype=torch.bool, device=device)

    def run(chunk_size: int | None) -> tuple[float, torch.Tensor]:
        best, out = float("inf"), None
        with torch.inference_mode():
            model.encode_volume(volumes, mask, chunk_size=chunk_size)  # warm-up
            for _ in range(repeats):
                if device != "cpu":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                out = model.encode_volume(volumes, mask, chunk_size=chunk_size)
                if device != "cpu":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
        return batch / best, out

    batched, batched_out = run(None)
    per_slice, per_slice_out = run(1)
    same = torch.allclose(batched_out, per_slice_out, atol=1e-5)
    print(
        f"RadCLIP-3D forward ({model_name}, {batch} volumes x {slices} slices, {device}, "
        f"{torch.get_num_threads()} threads): all slices batched {batched:.1f} volumes/s, slice by slice "
        f"{per_slice:.1f} volumes/s, ratio {batched / per_slice:.1f} (same embeddings: {same})"
    )
    return {"batched": batched, "slice_by_slice": per_slice, "ratio": batched / per_slice}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--volumes", type=int, default=64)
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128], help="(D, H, W) voxels")
    parser.add_argument("--source-spacing", type=float, nargs=3, default=[2.5, 1.5, 1.5], help="(d, h, w) mm")
    parser.add_argument("--spacing", type=float, nargs=3, default=[2.0, 1.0, 1.0], help="target (d, h, w) mm")
    parser.add_argument("--window", default="lung", choices=sorted(WINDOW_PRESETS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the workers do the work; one thread each, as DataLoader workers run
    print(f"torch {torch.__version__}, {args.workers} workers, window {args.window}")
    with tempfile.TemporaryDirectory() as tmp:
        data_pipeline(args, Path(tmp))
    radclip_forward_throughput()


if __name__ == "__main__":
    main()
