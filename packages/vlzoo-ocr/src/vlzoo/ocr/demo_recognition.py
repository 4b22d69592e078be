"""The recognition part of `vlzoo-ocr demo`: rendered word crops → a tiny CLIP on crops and prompts → an
ORP bank → DPTR text-only pre-training → fine-tuning from it and from scratch (the same budget) → the
recognition report (`vlzoo-ocr eval recognition` of the model fine-tuned from the pre-trained decoder, under
`out/report`). `benchmarks/ocr_dptr_transfer.py` runs it with larger settings.

>>> summary = run_recognition_demo("vlzoo-ocr-demo/recognition")   # curves, text-only accuracy, report/
"""

from __future__ import annotations

import copy
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from vlzoo.core import ConfigError, create_model, get_tokenizer
from vlzoo.core.weights import save
from vlzoo.ocr.data.crops import CROP_STYLES, WordCrops, write_ocr_words
from vlzoo.ocr.data.labels import CHARSET_36, normalize_label
from vlzoo.ocr.data.toyworld import generated_lexicon, sample_background, sample_label
from vlzoo.ocr.dptr import write_orp_bank
from vlzoo.ocr.metrics_recognition import recognition_metrics

__all__ = [
    "RECOGNITION_DEMO",
    "arm_overrides",
    "clip_inputs",
    "finetune_arm",
    "finetune_arms",
    "group_accuracy",
    "lexicon_labels",
    "memory_swap_check",
    "memory_table_probe",
    "pretrain_stages",
    "pretraining_text",
    "run_recognition_demo",
    "seen_groups",
    "word_clip_retrieval",
]

# CPU-minutes settings; the benchmark's are larger. `style` names the ocr-words crop style (`CROP_STYLES`):
# `clean` keeps the reading task learnable by a tiny ViT trained from scratch in a few hundred steps.
# `labels` names what the crops spell (`LABEL_KINDS`: ocr-toyworld's vocabulary, random strings or both);
# `text` what the decoder pre-trains on: `crops` (the train crops' labels) or `generated` (fresh labels of
# the same kind every batch: DPTR's premise is a text corpus far larger than the labelled images).
RECOGNITION_DEMO = {
    "n_train": 1000,
    "n_test": 200,
    "style": "clean",
    "labels": "vocabulary",
    "text": "crops",
    "pretrain_lr": 3e-3,
    # clip-vit-tiny's contrastive loss sits at chance (ln 64) for its first ~150 steps on these crops; by 400
    # it is at 2.5 and retrieves a train crop's word 16% of the time among 84 (chance 1.2%)
    "clip_steps": 400,
    # 0: the CLIP trains on the fine-tuning crops; N: on N other renders of their words (its own image-text
    # data, as a real CLIP's is not the recognizer's; trained on the fine-tuning crops a tiny CLIP learns
    # them by heart: crop -> prompt retrieval 86% on them, 8% on test crops of the same words)
    "clip_crops": 0,
    # the stage-1 CLIP: "clip-vit-tiny" (linear 8x8 patches) or "word-clip-tiny" (the same with a conv stem:
    # held-out crop -> prompt retrieval 25% against 9% after 1000 steps; `vlzoo.ocr.dptr.word_clip_tiny`)
    "clip_model": "clip-vit-tiny",
    "clip_lr": 1e-3,
    "pretrain_steps": 400,
    "steps": 300,
    "eval_every": 50,
    "batch": 64,
    "lr": 2e-3,
    # the fine-tuning ViT's stem (`vlzoo.ocr.dptr.STEMS`): "patch" is the paper's linear patch embedding
    "stem": "patch",
    # the fine-tuning encoder (`vlzoo.ocr.dptr.ENCODERS`): "vit" starts fresh (the official fine-tuning);
    # "clip" is stage 1's CLIP image tower, the same start for every arm
    "encoder": "vit",
    "fmu_query_std": 0.02,  # `DPTRConfig.fmu_query_std`: the FMU queries' initial scale
    "seed": 1,  # the fine-tunes' ViT/FMU initialization and batches (the same in every arm)
    "parallel": False,  # the three fine-tuning runs in three processes (one thread each)
    # DPTR's premise at toy scale (0 = off): a `generated_lexicon` of this many made-up words is the text
    # corpus (`text="lexicon"` pre-trains on all of it); the train crops spell only its first `seen_words`;
    # the test crops alternate between those and words that appear only in the pre-training text
    "lexicon": 0,
    "seen_words": 80,
}
ARMS = ("pretrained", "scratch", "frozen-decoder")
# the made-up words' lengths: a tiny ViT reads 3-7 characters in a few hundred steps; 10 take far longer
LEXICON_LENGTHS = (3, 7)


# a fine-tuning run's test curve: (step, word accuracy % over all test crops and each group)
Curve = list[tuple[int, dict[str, float]]]


def _crops_tensor(crops: WordCrops, transform: Callable) -> torch.Tensor:
    return torch.stack([transform(crops[i]["image"]) for i in range(len(crops))])


def train_word_clip(
    crops: WordCrops,
    steps: int,
    batch: int,
    log: Callable[[str], None] = print,
    model: str = "clip-vit-tiny",
    lr: float = 1e-3,
) -> nn.Module:
    """A tiny CLIP (`model`) trained contrastively on word crops (squashed to its input size: a crop cut to
    its square would lose the word's ends) and their prompts `a photo of a '<word>'`."""
    torch.manual_seed(0)
    clip = create_model(model)
    images, tokens = clip_inputs(clip, crops)
    opt = torch.optim.AdamW(clip.parameters(), lr=lr, weight_decay=0.05)
    clip.train()
    for step in range(steps):
        idx = torch.randperm(len(images))[:batch]
        text = type(tokens)(tokens.input_ids[idx], tokens.attention_mask[idx])
        loss = clip({"image": images[idx], "text": text})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"  clip step {step}: contrastive loss {loss.item():.3f}")
    clip.eval()
    accuracy, chance = word_clip_retrieval(clip, images[:500], tokens, crops.labels[:500])
    log(
        f"  train crop -> prompt retrieval (top-1 among the distinct words): {accuracy:.1f}% (chance {chance:.1f}%)"
    )
    return clip


def clip_inputs(clip: nn.Module, crops: WordCrops) -> tuple[torch.Tensor, Any]:
    """Word crops as a CLIP reads them (squashed to its input size, normalized) and their prompts' tokens."""
    cfg = clip.config.vision
    height, width = clip.visual.image_hw
    arrays = [
        cv2.resize(np.asarray(crops[i]["image"]), (width, height), interpolation=cv2.INTER_AREA)
        for i in range(len(crops))
    ]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    images = (images - torch.tensor(cfg.mean)[:, None, None]) / torch.tensor(cfg.std)[:, None, None]
    tokens = get_tokenizer(clip)([f"a photo of a '{normalize_label(t, CHARSET_36)}'" for t in crops.labels])
    return images, tokens


@torch.no_grad()
def word_clip_retrieval(clip: nn.Module, images: torch.Tensor, tokens: Any, labels: list[str]):
    """`(accuracy, chance)` in percent: how often a crop's embedding is closest to its own word's prompt
    among the prompts of every distinct word in `labels` (`tokens`: the prompts, one per label)."""
    distinct = {label: i for i, label in enumerate(labels)}  # the last crop of each word gives its prompt
    rows = torch.tensor(list(distinct.values()))
    text = clip.encode_text(type(tokens)(tokens.input_ids[rows], tokens.attention_mask[rows]))
    closest = (clip.encode_image(images) @ text.T).argmax(1)
    words = list(distinct)
    hits = sum(words[j] == label for j, label in zip(closest.tolist(), labels))
    return 100 * hits / len(labels), 100 / len(words)


def group_accuracy(
    predictions: list[str], labels: list[str], groups: dict[str, list[bool]]
) -> dict[str, float]:
    """Word accuracy (%, 36-character charset) over all `labels` (`"all"`) and over each group's members."""
    result = {"all": recognition_metrics(predictions, labels, CHARSET_36)["accuracy"]}
    for name, member in groups.items():
        pairs = [(p, t) for p, t, m in zip(predictions, labels, member) if m]
        result[name] = recognition_metrics(*zip(*pairs), CHARSET_36)["accuracy"] if pairs else float("nan")
    return result


def _accuracy(model: nn.Module, images: torch.Tensor, labels: list[str], groups: dict) -> dict[str, float]:
    model.eval()
    preds = [p for i in range(0, len(images), 100) for p in model.recognize(images[i : i + 100])]
    model.train()
    return group_accuracy(preds, labels, groups)


def _fit(model, images, targets, test, steps, batch, lr, eval_every, name, log) -> Curve:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    curve = [(0, _accuracy(model, *test))]
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randperm(len(images))[:batch]
        loss = model({"image": images[idx], "text": targets[idx]})["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)  # OpenOCR's grad_clip
        opt.step()
        schedule.step()
        if step % eval_every == 0 or step == steps:
            curve.append((step, _accuracy(model, *test)))
            read = ", ".join(f"{k} {v:.1f}%" for k, v in curve[-1][1].items())
            log(f"  {name} step {step}: loss {loss.item():.3f}, test word accuracy {read}")
    return curve


def finetune_arm(
    name: str,
    overrides: dict[str, Any],
    words: str,
    settings: dict[str, Any],
    out: str,
    log: Callable[[str], None] | None = None,
) -> tuple[Curve, float]:
    """One fine-tuning run (ViT + FMU + decoder as `overrides` set it) on the crops under `words`; saves it as
    `out/dptr-finetune-<name>/model.safetensors`; returns its test curve and seconds. Runs in a worker
    process too (then it logs with `print`, one thread)."""
    if log is None:
        torch.set_num_threads(1)
        log = functools.partial(print, flush=True)
    start = time.perf_counter()
    transform = create_model("dptr-parseq-tiny").config.transform(train=False)
    train_crops, test_crops = (WordCrops(Path(words) / split / "labels.txt") for split in ("train", "test"))
    images = _crops_tensor(train_crops, transform)
    test = (_crops_tensor(test_crops, transform), test_crops.labels, seen_groups(train_crops, test_crops))
    torch.manual_seed(settings["seed"])  # the same ViT and FMU initialization and batches in every run
    model = create_model(
        "dptr-parseq-tiny",
        stage="finetune",
        stem=settings["stem"],
        fmu_query_std=settings["fmu_query_std"],
        clip_model=settings["clip_model"],
        **overrides,
    )
    targets = model.config.tokenizer()(train_crops.labels)
    s = settings
    curve = _fit(model, images, targets, test, s["steps"], s["batch"], s["lr"], s["eval_every"], name, log)
    save(model, Path(out) / f"dptr-finetune-{name}" / "model.safetensors")
    return curve, time.perf_counter() - start


def finetune_arms(
    jobs: list[tuple[str, dict[str, Any], str, dict[str, Any], str]],
    workers: int,
    log: Callable[[str], None] | None = None,
) -> list[tuple[Curve, float]]:
    """`finetune_arm(*job)` for every job, `workers` at once in spawned processes (one thread each) when
    `workers` > 1, else one after the other in this process, logging to `log`."""
    if workers <= 1:
        return [finetune_arm(*job, log=log) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
        return list(pool.map(finetune_arm, *zip(*jobs)))


def arm_overrides(pretrained: Path, clip: Path, encoder: str = "vit") -> dict[str, dict[str, Any]]:
    """The fine-tuning arms' model settings: the decoder pre-trained on text only (`pretrained`), the same
    model from scratch (`scratch`), the pre-trained decoder frozen (`frozen-decoder`); with `encoder="clip"`
    every arm's encoder starts from the stage-1 CLIP's image tower (`clip`), so only the decoder differs."""
    shared = {"encoder": encoder, **({"clip_pretrained": str(clip)} if encoder == "clip" else {})}
    return {
        "pretrained": {**shared, "pretrained_decoder": str(pretrained)},
        "scratch": shared,
        "frozen-decoder": {**shared, "pretrained_decoder": str(pretrained), "freeze_decoder": True},
    }


def seen_groups(train: WordCrops, test: WordCrops) -> dict[str, list[bool]]:
    """Test crops whose word is among the train crops' labels (`seen`) and the others (`unseen`: with
    `text="lexicon"`, the words only the text-only pre-training has met)."""
    known = set(train.labels)
    seen = [label in known for label in test.labels]
    return {"seen": seen, "unseen": [not m for m in seen]}


def lexicon_labels(
    size: int, seen_words: int, n_train: int, n_test: int, seed: int = 0
) -> tuple[list[str], dict[str, list[str]]]:
    """DPTR's premise at toy scale: `(lexicon, {"train", "test"} crop labels)`. The lexicon
    (`generated_lexicon`) is the pre-training text; the train crops spell its first `seen_words` words
    (uniformly); test crop i spells a seen word when i is even, else one of the other words, which only the
    text-only pre-training has met."""
    if not 0 < seen_words < size:
        raise ConfigError(f"seen_words must be in 1..{size - 1} (the lexicon's size), got {seen_words}")
    lexicon = generated_lexicon(size, seed, LEXICON_LENGTHS)
    seen, unseen = lexicon[:seen_words], lexicon[seen_words:]
    rng = np.random.default_rng([seed, 0x5EE7])
    train = [seen[j] for j in rng.integers(len(seen), size=n_train)]
    test = [
        seen[int(rng.integers(len(seen)))] if i % 2 == 0 else unseen[int(rng.integers(len(unseen)))]
        for i in range(n_test)
    ]
    return lexicon, {"train": train, "test": test}


def _pretrain(pre: nn.Module, text_batch: Callable, steps: int, batch: int, lr: float, log: Callable) -> None:
    tokenizer = pre.config.tokenizer()
    opt = torch.optim.AdamW([p for p in pre.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    pre.train()
    for step in range(steps):
        labels = text_batch(batch)
        loss = pre({"text": tokenizer(labels), "captions": labels})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"  pretrain step {step}: loss {loss.item():.3f}")


def pretraining_text(
    text: str,
    crop_labels: list[str],
    labels: str = "vocabulary",
    style: str = "clean",
    seed: int = 12_345,
    lexicon: list[str] | None = None,
) -> Callable[[int], list[str]]:
    """`n -> n labels` for text-only pre-training: random train crop labels (`text="crops"`), fresh labels
    of the crops' kind `labels`, in the case the crop `style` renders (`text="generated"`, drawn from another
    random stream than the crops'), or uniform draws from `lexicon` (`text="lexicon"`)."""
    if text in ("crops", "lexicon"):
        pool = crop_labels if text == "crops" else lexicon
        if not pool:
            raise ConfigError(f"pre-training text {text!r} needs a non-empty word list")
        generator = torch.Generator().manual_seed(seed)
        return lambda n: [pool[i] for i in torch.randint(len(pool), (n,), generator=generator)]
    if text != "generated":
        raise ConfigError(f"pre-training text must be 'crops', 'generated' or 'lexicon', got {text!r}")
    rng = np.random.default_rng(seed)
    lower = CROP_STYLES[style].lowercase
    return lambda n: [
        label.lower() if lower else label for label in (sample_label(rng, labels) for _ in range(n))
    ]


@torch.no_grad()
def memory_swap_check(model: nn.Module, labels: list[str]) -> dict[str, float]:
    """Does a text-only pre-trained DPTR read its memory? Each label's pseudo-visual memory is swapped for
    the next label's: `{"neighbour", "own"}`, the word accuracy (%) of what it reads against the neighbour's
    label (high: it reads the memory) and against its own (high: it guesses from a language prior)."""
    model.eval()
    memory = model.pseudo_visual_memory(labels).roll(-1, 0)  # row i holds label i + 1's memory
    read = model.chars.decode(model.decoder.decode(memory).argmax(-1))
    neighbour = labels[1:] + labels[:1]
    return {
        "neighbour": recognition_metrics(read, neighbour, CHARSET_36)["accuracy"],
        "own": recognition_metrics(read, labels, CHARSET_36)["accuracy"],
    }


def memory_table_probe(
    model: nn.Module,
    words: list[str],
    steps: int = 100,
    lr: float = 1e-2,
    batch: int = 64,
    train_decoder: bool = False,
    init_std: float = 0.02,
    eval_every: int = 25,
    seed: int = 0,
) -> list[tuple[int, float]]:
    """Can gradient descent reach what a DPTR decoder knows, with no image in the way? Each of `words` gets
    its own learnable memory `[max_length + 1, D]` (the FMU's output shape, started at `init_std`, the FMU
    queries' scale), trained with the permutation LM loss under a copy of `model`'s decoder, frozen unless
    `train_decoder`. Returns `(step, word accuracy %)` of reading each word's memory back (AR + refinement).

    The fine-tune's frozen-decoder arm asks the same of ViT + FMU; this isolates the decoder: a frozen
    pre-trained decoder that is reachable reads its words from a learned memory within tens of steps, a
    frozen random one reads none (`--decoder-probe` of benchmarks/ocr_dptr_transfer.py). Deterministic for a
    `seed`; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the decoder's dropout
        return _memory_table_probe(model, words, steps, lr, batch, train_decoder, init_std, eval_every, seed)


def _memory_table_probe(model, words, steps, lr, batch, train_decoder, init_std, eval_every, seed):
    generator = torch.Generator().manual_seed(seed)
    decoder = copy.deepcopy(model.decoder).requires_grad_(train_decoder).train()
    length, dim = decoder.cfg.max_length + 1, decoder.cfg.embed_dim
    table = nn.Parameter(torch.randn(len(words), length, dim, generator=generator) * init_std)
    params = [table, *decoder.parameters()] if train_decoder else [table]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    targets = model.chars(words)

    def read() -> float:
        decoder.eval()
        with torch.no_grad():
            predictions = model.chars.decode(decoder.decode(table).argmax(-1))
        decoder.train()
        return recognition_metrics(predictions, words, CHARSET_36)["accuracy"]

    curve = [(0, read())]
    for step in range(1, steps + 1):
        idx = torch.randint(len(words), (batch,), generator=generator)
        loss = decoder.loss(table[idx], targets[idx], generator=generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            curve.append((step, read()))
    return curve


def pretrain_stages(out: Path, s: dict[str, Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    """The demo's stages 1-3 under `out` with the full settings `s`: crops, the tiny CLIP, the ORP bank and
    the text-only pre-training (each reused when a run under `out` made it already). Returns `words` (the
    crops' folder), `pretrained` (the pre-trained DPTR's weights), `model` (it, in eval mode),
    `test_labels`, `groups` (`seen_groups`), `text_only` and `swapped` (its accuracies reading CLIP's
    memory of the test labels, and `memory_swap_check`), `lexicon` (or None) and `seconds`."""
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    log("1. ocr-words crops and a tiny CLIP trained on them and their prompts")
    kind = f"lexicon{s['lexicon']}-seen{s['seen_words']}" if s["lexicon"] else s["labels"]
    words = out / f"ocr-words-{s['style']}-{kind}-{s['n_train']}-{s['n_test']}"
    labels_file = words / "train" / "labels.txt"
    lexicon, label_lists = None, None
    if s["lexicon"]:
        lexicon, label_lists = lexicon_labels(s["lexicon"], s["seen_words"], s["n_train"], s["n_test"])
    if not labels_file.is_file():
        write_ocr_words(
            words,
            n_train=s["n_train"],
            n_test=s["n_test"],
            seed=0,
            style=s["style"],
            labels=s["labels"],
            label_lists=label_lists,
        )
    train_crops = WordCrops(labels_file)
    clip_crops, clip_data = train_crops, words.name
    if s["clip_crops"]:  # the CLIP's own image-text data: other renders of the train crops' words
        clip_data = f"{words.name}-own{s['clip_crops']}"
        clip_words = out / f"clip-crops-{clip_data}"
        if not (clip_words / "train" / "labels.txt").is_file():
            own = (
                lexicon_labels(s["lexicon"], s["seen_words"], s["clip_crops"], 1)[1] if s["lexicon"] else None
            )
            write_ocr_words(
                clip_words,
                n_train=s["clip_crops"],
                n_test=0,
                seed=1,
                style=s["style"],
                labels=s["labels"],
                label_lists=own,
            )
        clip_crops = WordCrops(clip_words / "train" / "labels.txt")
    # the CLIP depends only on its crops and steps: a rerun under the same `out` reuses it
    clip_run = f"clip-{clip_data}-{s['clip_steps']}-{s['batch']}"
    if (s["clip_model"], s["clip_lr"]) != ("clip-vit-tiny", 1e-3):
        clip_run += f"-{s['clip_model']}-{s['clip_lr']}"
    clip_path = out / clip_run / "model.safetensors"
    if not clip_path.is_file():
        clip = train_word_clip(clip_crops, s["clip_steps"], s["batch"], log, s["clip_model"], s["clip_lr"])
        save(clip, clip_path)
    seconds["clip"] = time.perf_counter() - start

    log("2. ORP bank: the CLIP's image tokens of 100 text-free backgrounds")
    backgrounds = out / "backgrounds"
    backgrounds.mkdir(exist_ok=True)
    for i in range(100):
        image = sample_background(np.random.default_rng(10_000 + i), (64, 64))
        Image.fromarray(image).save(backgrounds / f"{i}.png")
    bank = out / "orp.safetensors"
    write_orp_bank(backgrounds, bank, s["clip_model"], str(clip_path))

    test_crops = WordCrops(words / "test" / "labels.txt")
    test_labels, groups = test_crops.labels, seen_groups(train_crops, test_crops)
    clip = create_model(s["clip_model"], pretrained=clip_path).eval()
    retrieval, chance = word_clip_retrieval(clip, *clip_inputs(clip, test_crops), test_labels)
    log(
        f"  test crop -> prompt retrieval among the {len(set(test_labels))} test words: {retrieval:.1f}% "
        f"(chance {chance:.1f}%)"
    )
    text_batch = pretraining_text(s["text"], train_crops.labels, s["labels"], s["style"], lexicon=lexicon)

    log("3. DPTR text-only pre-training of the decoder (CLIP text memory + ORP)")
    t = time.perf_counter()
    # like the CLIP, a rerun under the same `out` with the same text settings reuses the pre-training
    text_kind = f"{s['text']}-lexicon{s['lexicon']}" if s["text"] == "lexicon" else s["text"]
    run = f"{clip_path.parent.name}-{text_kind}-{s['pretrain_steps']}-{s['pretrain_lr']}"
    pre_path = out / f"dptr-pretrain-{run}" / "model.safetensors"
    torch.manual_seed(0)
    pre = create_model(
        "dptr-parseq-tiny",
        stage="pretrain",
        clip_model=s["clip_model"],
        clip_pretrained=str(clip_path),
        orp_bank=str(bank),
        pretrained=str(pre_path) if pre_path.is_file() else None,
    )
    if not pre_path.is_file():
        _pretrain(pre, text_batch, s["pretrain_steps"], s["batch"], s["pretrain_lr"], log)
        save(pre, pre_path)
    pre.eval()
    text_only = group_accuracy(pre.recognize(labels=test_labels), test_labels, groups)
    read = ", ".join(f"{k} {v:.1f}%" for k, v in text_only.items())
    log(f"  the pre-trained decoder reads CLIP's memory of the test labels: word accuracy {read}")
    swapped = memory_swap_check(pre, test_labels)
    log(
        f"  given its neighbour's memory instead, it reads the neighbour's word {swapped['neighbour']:.1f}% "
        f"and its own {swapped['own']:.1f}% of the time (a language model alone would ignore the swap)"
    )
    seconds["pretrain"] = time.perf_counter() - t

    return {
        "words": words,
        "clip": clip_path,
        "pretrained": pre_path,
        "model": pre,
        "test_labels": test_labels,
        "groups": groups,
        "text_only": text_only,
        "swapped": swapped,
        "clip_retrieval": retrieval,
        "lexicon": lexicon,
        "seconds": seconds,
    }


def run_recognition_demo(
    out: str | Path, log: Callable[[str], None] = print, **settings: Any
) -> dict[str, Any]:
    """Runs the four stages under `out` (settings: `RECOGNITION_DEMO`'s keys) and returns the summary:
    `curves` (`(step, accuracies)` by fine-tuning step for `pretrained`, `scratch`, `frozen-decoder`; the
    test word accuracy of `all` test crops and of each `seen_groups` group), `text_only` (the pre-trained
    decoder reading CLIP's memory of the test labels, the same groups), `chance`, seconds. The CLIP and the
    pre-training are saved under names holding their settings and reused by a rerun under the same `out`."""
    s = {**RECOGNITION_DEMO, **settings}
    out = Path(out)
    stages = pretrain_stages(out, s, log)
    words, pre_path, seconds = stages["words"], stages["pretrained"], stages["seconds"]
    test_labels, groups, text_only = stages["test_labels"], stages["groups"], stages["text_only"]
    swapped = stages["swapped"]

    log("4. fine-tuning on the crops: the same steps, batches and learning rate for every run")
    overrides = arm_overrides(pre_path, stages["clip"], s["encoder"])
    jobs = [(name, overrides[name], str(words), s, str(out)) for name in ARMS]
    results = finetune_arms(jobs, len(jobs) if s["parallel"] else 1, log)
    curves = {name: curve for name, (curve, _) in zip(ARMS, results)}
    seconds.update({name: sec for name, (_, sec) in zip(ARMS, results)})
    finetuned = out / "dptr-finetune-pretrained" / "model.safetensors"
    from vlzoo.ocr.evaluation_recognition import evaluate_recognition  # rich and matplotlib: imported late

    report = evaluate_recognition(
        create_model(
            "dptr-parseq-tiny",
            pretrained=finetuned,
            stem=s["stem"],
            encoder=s["encoder"],
            clip_model=s["clip_model"],
        ),
        data=str(words / "test" / "labels.txt"),
        workers=0,
        out=out / "report",
    )

    folded = [normalize_label(w, CHARSET_36) for w in test_labels]
    chance = 100 * max(map(folded.count, set(folded))) / len(folded)
    summary = {
        "settings": s,
        "curves": curves,
        "text_only": text_only,
        "text_only_swapped_memory": swapped,
        "clip_retrieval": stages["clip_retrieval"],
        "chance": chance,
        "report": {k: report[k] for k in ("benchmarks", "combined")},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for group in text_only:
        members = sum(groups[group]) if group in groups else len(test_labels)
        log(
            f"\nword accuracy (%) on the ocr-words test crops, {group} ({members} crops), by fine-tuning step"
        )
        log(f"{'step':>6} " + " ".join(f"{n:>15}" for n in ARMS))
        for i, (step, _) in enumerate(curves["scratch"]):
            log(f"{step:>6} " + " ".join(f"{curves[n][i][1][group]:>15.1f}" for n in ARMS))
    read = ", ".join(f"{k} {v:.1f}%" for k, v in text_only.items())
    log(f"text-only pre-training, reading CLIP's memory of the test labels: {read}")
    log(f"chance (always the most frequent test word): {chance:.1f}%")
    return summary
