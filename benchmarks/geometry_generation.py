"""Beam-search programs/s of GeoX: the same model and the same problems decoded with the KV cache and
without it (every step recomputing the whole prefix + program), in one run.

The model is geox-tiny (or a trained checkpoint, `--pretrained`), its prefix the 8 GS-Former queries plus the
question; both ways give identical programs (asserted). The two ways alternate within each repeat so a
change in machine load affects both alike; the median over repeats is reported.
Ratio = programs/s with the cache / programs/s without (> 1: the cache is faster).

    python benchmarks/geometry_generation.py                    # 32 problems, 10 beams, 3 repeats
    python benchmarks/geometry_generation.py --decoder-layers 8 --max-program-len 32
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import vlzoo.core as vz
from vlzoo.core.train import ImageTextDataModule


def programs_per_second(model, batch, beams: int, use_cache: bool) -> tuple[float, list]:
    start = time.perf_counter()
    programs = model.generate_programs(batch, beams, use_cache=use_cache)
    elapsed = time.perf_counter() - start
    return sum(len(p) for p in programs) / elapsed, programs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-program-len", type=int, default=24)
    parser.add_argument("--decoder-layers", type=int, default=None, help="a deeper tiny decoder")
    parser.add_argument("--pretrained", default=None, help="geox-tiny weights (default: random)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    overrides: dict = {"max_program_len": args.max_program_len}
    if args.decoder_layers:
        overrides["decoder"] = {
            "config_overrides": {
                **vz.get_model_config("geox-tiny").decoder.config_overrides,
                "num_hidden_layers": args.decoder_layers,
            }
        }
    model = vz.create_model("geox-tiny", pretrained=args.pretrained, **overrides).eval()
    with tempfile.TemporaryDirectory() as tmp:
        data = ImageTextDataModule(
            data="geo-toyworld",
            data_dir=tmp,
            model="geox-tiny",
            generate={"n_train": 4, "n_val": 4, "n_test": args.problems},
            batch_size=args.problems,
            num_workers=0,
        )
        data.prepare_data()
        data.setup("test")
        batch = next(iter(data.test_dataloader()))

    rates: dict[bool, list[float]] = {True: [], False: []}
    outputs: dict[bool, list] = {}
    model.generate_programs(batch, args.beams)  # warm-up
    for _ in range(args.repeats):
        for use_cache in (True, False):
            rate, outputs[use_cache] = programs_per_second(model, batch, args.beams, use_cache)
            rates[use_cache].append(rate)
    assert outputs[True] == outputs[False], "the KV cache changed the programs"
    cached, uncached = statistics.median(rates[True]), statistics.median(rates[False])
    layers = model.decoder.model.config.num_hidden_layers
    print(
        f"geox-tiny beam search ({args.problems} problems x {args.beams} beams, up to {args.max_program_len} "
        f"tokens, {layers}-layer decoder, {args.threads} thread(s), median of {args.repeats})"
    )
    print(f"  with KV cache:    {cached:8.1f} programs/s")
    print(f"  without KV cache: {uncached:8.1f} programs/s")
    print(f"  ratio cache/no-cache: {cached / uncached:.2f}x  (identical programs: yes)")


if __name__ == "__main__":
    main()
