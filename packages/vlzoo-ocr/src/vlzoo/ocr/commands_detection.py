"""The detection side's subcommands of `vlzoo-ocr` (wired in `cli.py`) and its evaluation task.

vlzoo-ocr render OUT [--n-train N ...]             write ocr-toyworld (PNG/JPEG + ICDAR gt + index JSON)
vlzoo-ocr render-glyphs DATA OUT [--split S]       ODM glyph labels of a detection dataset, one PNG per image
vlzoo-ocr export-mmocr CKPT OUT.pth               an ODM/DBNet backbone in MMOCR's CLIPResNet key layout
vlzoo-ocr fit-mmocr CKPT [--data D] [--config C]   MMOCR's own DBNet from that backbone ([mmocr] extra)
vlzoo-ocr eval detection --model dbnet-tiny --pretrained W [--data ocr-toyworld] [--out DIR]
vlzoo-ocr demo [--out DIR]                         ocr-toyworld → tiny ODM pre-train → DBNet → report
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vlzoo.core import ConfigError
from vlzoo.core.eval import register_eval_task

OCR_EVAL = "ocr"  # this domain's namespace of evaluation tasks
UNIFORM_FONT_NAME = "DejaVuSans"  # vlzoo.ocr.render.UNIFORM_FONT, named here to keep the parser light

# by "module:function": building the parser must not import the evaluation code
register_eval_task(
    "detection",
    "vlzoo.ocr.evaluation:evaluate_detection",
    help="ICDAR 2015 protocol: precision, recall, hmean at IoU > 0.5 with don't-care regions",
    domain=OCR_EVAL,
)


def _run_render(args: argparse.Namespace) -> int:
    from vlzoo.ocr.data import write_ocr_toyworld

    index = write_ocr_toyworld(
        args.out, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, image_size=args.image_size,
        max_words=args.max_words, seed=args.seed,
    )  # fmt: skip
    print(index)
    return 0


def configure_render(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder")
    p.add_argument("--n-train", type=int, default=200)
    p.add_argument("--n-val", type=int, default=40)
    p.add_argument("--n-test", type=int, default=40)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--max-words", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_render)


def _run_render_glyphs(args: argparse.Namespace) -> int:
    import cv2

    from vlzoo.ocr.data import read_detection_records, render_glyph_map

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skipped = 0
    records = read_detection_records(args.data, args.split)
    for record in records:
        image = cv2.imread(str(record.image_path), cv2.IMREAD_UNCHANGED)
        if image is None:
            print(f"skipped {record.image_path}: the image cannot be decoded")
            skipped += 1
            continue
        glyphs, missed = render_glyph_map(
            [(i.polygon, i.text) for i in record.instances], image.shape[:2], font=args.font
        )
        for word in missed:
            print(f"{record.gt_path}: font {args.font!r} cannot draw {word!r}; left out of the glyph label")
        # the official loader opens the glyph image by the photo's base name in --gt_dir
        cv2.imwrite(str(out / f"{record.image_path.stem}.png"), glyphs * 255)
    print(f"{len(records) - skipped} glyph labels in {out} ({skipped} images skipped)")
    return 0


def configure_render_glyphs(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a detection dataset: index JSON or a folder with images/ and gt/")
    p.add_argument("out", help="folder for the glyph PNGs (255 = glyph), named like the images")
    p.add_argument("--split", default="train", help="split of an index JSON")
    p.add_argument("--font", default=UNIFORM_FONT_NAME, help="the uniform font (a name of list_fonts())")
    p.set_defaults(func=_run_render_glyphs)


def _run_export(args: argparse.Namespace) -> int:
    from vlzoo.ocr.odm import export_mmocr

    print(export_mmocr(args.checkpoint, args.out))
    return 0


def configure_export_mmocr(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="vlzoo weights of an odm-* or dbnet-* model (.safetensors)")
    p.add_argument("out", help="the MMOCR backbone checkpoint to write (.pth, tensors only)")
    p.set_defaults(func=_run_export)


def _run_fit_mmocr(args: argparse.Namespace) -> int:
    from vlzoo.ocr.mmocr_fit import fit_mmocr

    print(
        fit_mmocr(
            args.checkpoint,
            args.work_dir,
            config=args.config,
            data=args.data,
            max_epochs=args.max_epochs,
            cfg_options=args.cfg_options or (),
        )
    )
    return 0


def configure_fit_mmocr(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="vlzoo weights of an odm-* or dbnet-* model (.safetensors)")
    p.add_argument("--work-dir", default="runs/mmocr-dbnet", help="mmengine's work_dir (logs, checkpoints)")
    p.add_argument(
        "--config",
        default="textdet/dbnet/dbnet_resnet50-oclip_1200e_icdar2015.py",
        help="an MMOCR config file, or a path inside MMOCR's own configs",
    )
    p.add_argument(
        "--data",
        default=None,
        help="an ICDAR-style detection dataset (index JSON or images/ + gt/), written as MMOCR annotations",
    )
    p.add_argument("--max-epochs", type=int, default=None, help="override train_cfg.max_epochs")
    p.add_argument("--cfg-options", nargs="+", default=None, help="key=value config overrides (mmengine)")
    p.set_defaults(func=_run_fit_mmocr)


DEMO_PARTS = ("detection", "recognition")


def _run_demo(args: argparse.Namespace) -> int:
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(DEMO_PARTS))
    if unknown:
        raise ConfigError(f"--parts: unknown part(s) {unknown}; choose from {', '.join(DEMO_PARTS)}")
    if "detection" in parts:
        from vlzoo.ocr.demo import run_detection_demo

        run_detection_demo(
            args.out,
            n_train=args.n_train,
            pretrain_steps=args.pretrain_steps,
            finetune_steps=args.finetune_steps,
        )
    if "recognition" in parts:
        from vlzoo.ocr.demo_recognition import run_recognition_demo

        settings = {"steps": args.finetune_steps} if args.finetune_steps else {}
        run_recognition_demo(Path(args.out) / "recognition", **settings)
    return 0


def configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="vlzoo-ocr-demo", help="where the data, runs and report go")
    p.add_argument("--n-train", type=int, default=None, help="training images (default: the demo's)")
    p.add_argument("--pretrain-steps", type=int, default=None, help="ODM pre-training steps")
    p.add_argument("--finetune-steps", type=int, default=None, help="DBNet (and DPTR) fine-tuning steps")
    p.add_argument(
        "--parts",
        default=",".join(DEMO_PARTS),
        help="which demos, comma-separated: detection (ODM → DBNet), recognition (DPTR text-only "
        "pre-training → fine-tune); default both",
    )
    p.set_defaults(func=_run_demo)


__all__ = [
    "OCR_EVAL",
    "configure_demo",
    "configure_export_mmocr",
    "configure_fit_mmocr",
    "configure_render",
    "configure_render_glyphs",
]
