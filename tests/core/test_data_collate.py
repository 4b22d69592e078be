"""Collation (transform + one tokenizer call per batch), skip counting across workers, albumentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.data_files import write_png, write_truncated_jpeg
from PIL import Image
from torch.utils.data import DataLoader

from vlzoo.core.data import (
    CsvPairs,
    ImageTextCollator,
    SkipCounter,
    ToyWorld,
    build_transform,
    flatten_captions,
    image_transform,
    skip_marker,
)
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.towers.tokenizers import ClipTokenizer, TokenizedText
from vlzoo.core.towers.vision import VisionTowerConfig

CFG = VisionTowerConfig(image_size=32)


class CountingTokenizer(ClipTokenizer):
    calls = 0

    def __call__(self, texts, context_length=None):
        CountingTokenizer.calls += 1
        return super().__call__(texts, context_length)


def test_batch_has_images_tokens_ids_and_typed_extras():
    tokenizer = CountingTokenizer(context_length=16)
    collate = ImageTextCollator(image_transform(CFG, train=False), tokenizer)
    samples = [
        {"image": Image.new("RGB", (40, 48), (255, 0, 0)), "text": "a red thing", "id": "a", "label": 2,
         "score": 0.5, "tags": ["x"]},
        {"image": Image.new("RGB", (32, 32), (0, 0, 255)), "text": "a blue thing", "id": "b", "label": 0,
         "score": 1.5, "tags": ["y", "z"]},
        skip_marker("c", "/data/c.jpg", "OSError: image file is truncated"),
    ]  # fmt: skip
    before = CountingTokenizer.calls
    batch = collate(samples)
    assert CountingTokenizer.calls == before + 1
    assert batch["image"].shape == (2, 3, 32, 32)
    assert batch["image"].dtype == torch.float32
    assert isinstance(batch["text"], TokenizedText)
    assert torch.equal(batch["text"].input_ids, tokenizer(["a red thing", "a blue thing"]).input_ids)
    assert batch["id"] == ["a", "b"]
    assert batch["label"].dtype == torch.long
    assert batch["label"].tolist() == [2, 0]
    assert batch["score"].dtype == torch.float32
    assert batch["tags"] == [["x"], ["y", "z"]]
    assert batch["skipped"] == [("/data/c.jpg", "OSError: image file is truncated")]
    # red image: channel 0 is above the mean, channel 2 below
    assert batch["image"][0, 0].mean() > 0 > batch["image"][0, 2].mean()


def test_several_captions_random_pick_is_seeded_and_all_keeps_them():
    world = ToyWorld("val", n=8, image_size=32, captions="all")
    samples = [world[i] for i in range(8)]
    tok = ClipTokenizer(context_length=32)
    pick = ImageTextCollator(image_transform(CFG, False), tok, captions="random", seed=3)
    again = ImageTextCollator(image_transform(CFG, False), tok, captions="random", seed=3)
    first = pick(samples)["captions"]
    assert first == again(samples)["captions"]
    assert all(c in s["texts"] for c, s in zip(first, samples))
    assert len({s["texts"].index(c) for c, s in zip(first, samples)}) > 1  # not always the same slot
    assert pick(samples)["captions"] != first  # the generator moves on

    evaluation = ImageTextCollator(image_transform(CFG, False), tok, captions="all")(samples)
    assert evaluation["text"].input_ids.shape == (40, 32)
    assert evaluation["text_to_image"].tolist() == [i for i in range(8) for _ in range(5)]
    assert evaluation["captions"][5:10] == samples[1]["texts"]


def test_flatten_captions():
    flat, owner = flatten_captions([["a", "b"], ["c"], ["d", "e", "f"]])
    assert flat == ["a", "b", "c", "d", "e", "f"]
    assert owner.dtype == torch.long
    assert owner.tolist() == [0, 0, 1, 2, 2, 2]


def test_a_batch_of_only_skipped_samples():
    batch = ImageTextCollator(image_transform(CFG, False), ClipTokenizer(16))([skip_marker(1, "p", "r")])
    assert batch["id"] == []
    assert batch["skipped"] == [("p", "r")]
    assert batch["image"].numel() == 0


def test_skips_are_counted_across_two_workers(tmp_path):
    rows = []
    for i in range(20):
        write_png(tmp_path / f"{i}.png", seed=i, size=24)
        rows.append(f"{i}.png,image number {i}")
    write_truncated_jpeg(tmp_path / "cut.jpg")
    rows[3] = "missing.png,a lost image"
    rows[11] = "cut.jpg,a truncated image"
    rows[17] = "17.png,"
    (tmp_path / "pairs.csv").write_text("filepath,title\n" + "\n".join(rows) + "\n")
    loader = DataLoader(
        CsvPairs(tmp_path / "pairs.csv"),
        batch_size=4,
        num_workers=2,
        collate_fn=ImageTextCollator(image_transform(CFG, train=True), ClipTokenizer(16)),
    )
    counter = SkipCounter()
    ids = []
    for batch in loader:
        counter.update_from_batch(batch)
        ids += batch["id"]
        assert batch["image"].shape[0] == len(batch["id"]) == len(batch["text"])
    assert counter.seen == 20
    assert counter.skipped == 3
    assert sorted(ids) == sorted(set(range(20)) - {3, 11, 17})
    assert counter.rate == pytest.approx(0.15)
    with pytest.raises(DataError, match=r"3 of 20 samples \(15\.0%\).*1\.0%") as err:
        counter.check(0.01)
    message = str(err.value)
    for name in ("missing.png", "cut.jpg", "17.png"):
        assert str(tmp_path / name) in message
    counter.check(0.2)  # under the threshold: no error
    counter.reset()
    assert counter.seen == counter.skipped == 0
    counter.check(0.0)


def test_skip_counter_keeps_a_few_examples():
    counter = SkipCounter(max_examples=2)
    counter.update(10, [("a", "x"), ("b", "y"), ("c", "z")])
    counter.update(10, [("d", "w")])
    assert counter.examples == [("a", "x"), ("b", "y")]
    assert counter.rate == pytest.approx(0.2)


# ----------------------------------------------------------------------------------- albumentations


def test_albumentations_list_of_dicts_gets_tensor_and_normalization():
    array = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    transform = build_transform(CFG, train=True, albumentations=[{"type": "HorizontalFlip", "p": 1.0}])
    out = transform(Image.fromarray(array))
    expected = image_transform(CFG, train=False)(Image.fromarray(array[:, ::-1].copy()))
    assert out.shape == (3, 32, 32)
    torch.testing.assert_close(out, expected)


def test_albumentations_output_is_fitted_to_the_model_size():
    transform = build_transform(CFG, True, albumentations=[{"type": "RandomBrightnessContrast", "p": 0.0}])
    out = transform(Image.new("RGB", (64, 48), (10, 200, 30)))
    assert out.shape == (3, 32, 32)


def test_albumentations_compose_with_its_own_normalize_is_not_normalized_twice():
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    compose = A.Compose([A.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)), ToTensorV2()])
    out = build_transform(CFG, True, albumentations=compose)(Image.new("RGB", (32, 32), (255, 0, 0)))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))


def test_unknown_albumentation_is_a_config_error():
    with pytest.raises(ConfigError, match=r"albumentations\[0\]: albumentations has no transform 'Flipp'"):
        build_transform(CFG, True, albumentations=[{"type": "Flipp"}])


def test_collator_works_with_an_albumentations_transform_in_workers():
    world = ToyWorld("train", n=8, image_size=32, captions="random")
    transform = build_transform(CFG, True, albumentations=[{"type": "HorizontalFlip", "p": 0.5}])
    loader = DataLoader(
        world, batch_size=4, num_workers=2, collate_fn=ImageTextCollator(transform, ClipTokenizer(32))
    )
    batches = list(loader)
    assert [b["image"].shape for b in batches] == [(4, 3, 32, 32)] * 2


def test_a_sample_without_a_caption_among_captioned_ones_is_a_counted_skip():
    collate = ImageTextCollator(image_transform(CFG, train=False), ClipTokenizer(context_length=16))
    red = Image.new("RGB", (32, 32), (255, 0, 0))
    samples = [
        {"image": red, "text": "a red thing", "id": "a"},
        {"image": red, "id": "b", "path": "shard-000.tar#000000001"},  # its .txt member was lost
        {"image": red, "text": "another red thing", "id": "c"},
    ]
    batch = collate(samples)
    assert batch["id"] == ["a", "c"] and batch["text"].input_ids.shape == (2, 16)
    assert batch["image"].shape[0] == 2
    assert batch["skipped"] == [
        ("shard-000.tar#000000001", "no caption, unlike the other samples of its batch")
    ]
    labelled = ImageTextCollator(image_transform(CFG, train=False), None)(
        [{"image": red, "id": "x", "label": 1}]
    )
    assert "text" not in labelled and labelled["skipped"] == []  # classification data has no captions at all


def test_images_of_captions_follows_text_to_image_and_refuses_unpaired_counts():
    from vlzoo.core.data import images_of_captions
    from vlzoo.core.errors import DataError

    images = torch.arange(3.0).view(3, 1)
    several = {"image": images, "text": ["a", "b", "c", "d"], "text_to_image": torch.tensor([0, 0, 2, 1])}
    assert images_of_captions(several).flatten().tolist() == [0.0, 0.0, 2.0, 1.0]
    assert images_of_captions({"image": images, "text": ["a", "b", "c"]}) is images
    with pytest.raises(DataError, match="itm_scores pairs captions with images: got 2 captions for 3"):
        images_of_captions({"image": images, "text": ["a", "b"]}, "itm_scores")
