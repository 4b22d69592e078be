"""Images/s of the detection data pipeline, 2 DataLoader workers: decode → multi-scale resize → polygon
augmentation (rotation, random crop) → DB target maps (shrunk probability map + threshold map), as
`vlzoo.ocr.data.DetectionDataset` does it (albumentations with the polygons as keypoints, edge distances
vectorized over the edges), against a plain OpenCV pipeline doing the same steps in the same run
(cv2.warpAffine with the polygons moved by the same matrix, a numpy crop, the DB repository's
`MakeBorderMap` loop: one distance map per polygon edge).

MMOCR's transforms (the comparison the issue names first) need mmcv's compiled operators, which have no
wheel for this torch: mmocr is not installable here, so the OpenCV pipeline is the baseline.

    OMP_NUM_THREADS=1 python benchmarks/ocr_detection_pipeline.py            # 120 scenes of 640², 8 words
    OMP_NUM_THREADS=1 python benchmarks/ocr_detection_pipeline.py --images 60 --size 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pyclipper
import shapely
import torch
from torch.utils.data import DataLoader, Dataset

from vlzoo.ocr.data import DetectionDataset, read_detection_records, write_ocr_toyworld
from vlzoo.ocr.data.detection import DBTargetConfig


class OpenCVPipeline(Dataset):
    """The same steps written plainly with OpenCV and numpy loops."""

    def __init__(self, records, size: int, cfg: DBTargetConfig | None = None):
        self.records, self.size, self.cfg = records, size, cfg or DBTargetConfig()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        rng = np.random.default_rng(index)
        record = self.records[index]
        image = cv2.cvtColor(cv2.imread(str(record.image_path)), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        scale = rng.uniform(0.75, 1.5) * self.size / min(h, w)
        angle = rng.uniform(-10, 10)
        nh, nw = round(h * scale), round(w * scale)
        matrix = cv2.getRotationMatrix2D((nw / 2, nh / 2), angle, 1.0) @ np.diag([scale, scale, 1.0])
        image = cv2.warpAffine(image, matrix, (nw, nh))
        polygons = [np.c_[i.polygon, np.ones(len(i.polygon))] @ matrix.T for i in record.instances]
        y0 = int(rng.integers(0, max(1, nh - self.size + 1)))
        x0 = int(rng.integers(0, max(1, nw - self.size + 1)))
        crop = np.zeros((self.size, self.size, 3), np.uint8)
        part = image[y0 : y0 + self.size, x0 : x0 + self.size]
        crop[: part.shape[0], : part.shape[1]] = part
        polygons = [p - (x0, y0) for p in polygons]
        ignore = [i.ignore for i in record.instances]
        return crop, self._targets(polygons, ignore)

    def _targets(self, polygons, ignore):
        size, r = (self.size, self.size), self.cfg.shrink_ratio
        gt = np.zeros(size, np.float32)
        mask = np.ones(size, np.float32)
        canvas = np.zeros(size, np.float32)
        tmask = np.zeros(size, np.float32)
        for polygon, dont_care in zip(polygons, ignore):
            geom = shapely.Polygon(polygon)
            d = geom.area * (1 - r**2) / max(geom.length, 1e-6)
            pco = pyclipper.PyclipperOffset()
            pco.AddPath(
                np.round(polygon).astype(np.int64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON
            )
            shrunk = pco.Execute(-d)
            if dont_care or not shrunk:
                cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 0.0)
                continue
            cv2.fillPoly(gt, [np.array(shrunk[0], np.int32)], 1.0)
            padded = np.array(pco.Execute(d)[0])
            cv2.fillPoly(tmask, [padded.astype(np.int32)], 1.0)
            xmin, ymin = padded.min(0)
            xmax, ymax = padded.max(0)
            xs, ys = np.meshgrid(np.arange(xmin, xmax + 1), np.arange(ymin, ymax + 1))
            dist = np.zeros((len(polygon), *xs.shape), np.float32)
            for i in range(len(polygon)):  # the DB repository's loop: one edge at a time
                a, b = polygon[i], polygon[(i + 1) % len(polygon)]
                ab = b - a
                t = np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / max(ab @ ab, 1e-6), 0, 1)
                dist[i] = np.clip(np.hypot(xs - a[0] - t * ab[0], ys - a[1] - t * ab[1]) / d, 0, 1)
            border = 1 - dist.min(0)
            x0, y0 = max(int(xmin), 0), max(int(ymin), 0)
            x1, y1 = min(int(xmax), size[1] - 1), min(int(ymax), size[0] - 1)
            if x1 >= x0 and y1 >= y0:
                region = canvas[y0 : y1 + 1, x0 : x1 + 1]
                np.maximum(
                    region,
                    border[y0 - int(ymin) : y1 - int(ymin) + 1, x0 - int(xmin) : x1 - int(xmin) + 1],
                    out=region,
                )
        return gt, mask, canvas * 0.4 + 0.3, tmask


def _first(samples):
    return len(samples)


def images_per_second(dataset: Dataset, workers: int, batch_size: int = 8) -> float:
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=_first, persistent_workers=False
    )
    start = time.perf_counter()
    n = sum(loader)
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=120)
    p.add_argument("--size", type=int, default=640, help="scene and training crop size")
    p.add_argument("--words", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="ocr-pipeline-"))
    index = write_ocr_toyworld(
        root, n_train=args.images, n_val=0, n_test=0, image_size=args.size, max_words=args.words
    )
    records = read_detection_records(index, "train")
    ours = DetectionDataset(records, args.size, train=True, targets=("db",))
    plain = OpenCVPipeline(records, args.size)
    rates = {"vlzoo.ocr DetectionDataset": [], "plain OpenCV": []}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        rates["vlzoo.ocr DetectionDataset"].append(images_per_second(ours, args.workers))
        rates["plain OpenCV"].append(images_per_second(plain, args.workers))
    best = {k: max(v) for k, v in rates.items()}
    print(
        f"{args.images} scenes of {args.size}², up to {args.words} words, {args.workers} workers "
        f"(best of {args.repeats})"
    )
    for name, rate in best.items():
        print(f"{name:<28} {rate:7.1f} images/s")
    print(f"ratio vlzoo / OpenCV: {best['vlzoo.ocr DetectionDataset'] / best['plain OpenCV']:.2f}")


if __name__ == "__main__":
    main()
