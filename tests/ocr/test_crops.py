"""Word crops: path<TAB>label folders, crops rectified from ICDAR-style gt, rendered ocr-words, STR
transforms, and the recognition batches the core's datamodule makes of them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vlzoo.core import DataError
from vlzoo.core.data import is_skipped
from vlzoo.ocr.data.crops import WordCrops, cut_icdar_crops, rectify_quad, write_ocr_words
from vlzoo.ocr.data.str_transforms import Curve, str_transform


def test_ocr_words_are_deterministic_and_read_back(ocr_words: Path, tmp_path: Path):
    train = WordCrops(ocr_words / "train" / "labels.txt")
    assert len(train) == 300 and not train.skipped_labels
    sample = train[0]
    assert sample["image"].mode == "RGB" and sample["text"] == train.labels[0]
    assert 16 <= sample["image"].size[1] <= 80 and sample["image"].size[0] > sample["image"].size[1]
    again = write_ocr_words(tmp_path, n_train=3, n_test=1, seed=0)
    assert (again.parent / "000002.png").read_bytes() == (ocr_words / "train" / "000002.png").read_bytes()
    lowered = WordCrops(ocr_words / "train" / "labels.txt", charset="36")
    assert all(t == t.lower() and t.isalnum() for t in lowered.labels)


def test_word_crops_count_bad_labels_and_skip_bad_images(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((20, 50, 3), 200, np.uint8))
    (tmp_path / "b.png").write_bytes(b"broken")
    (tmp_path / "labels.txt").write_text("a.png\tOK\nb.png\tbad\na.png\t!!!\na.png\t" + "x" * 30 + "\n")
    crops = WordCrops(tmp_path / "labels.txt", charset="36")
    assert crops.labels == ["ok", "bad"]
    assert crops.skipped_labels == [
        (3, "label empty after normalization"),
        (4, "label longer than 25 characters"),
    ]
    assert is_skipped(crops[1]) and "b.png" in crops[1]["path"]
    (tmp_path / "labels.txt").write_text("a.png OK\n")
    with pytest.raises(DataError, match=r"labels.txt:1: expected 'path<TAB>label'"):
        WordCrops(tmp_path / "labels.txt")


def test_rectify_quad_undoes_a_perspective_warp():
    word = np.zeros((20, 60, 3), np.uint8)
    word[:, ::10] = 255  # vertical bars every 10 px
    word[5:8] = (255, 0, 0)
    quad = np.array([[30, 40], [95, 25], [100, 50], [33, 62]], np.float32)
    src = np.array([[0, 0], [60, 0], [60, 20], [0, 20]], np.float32)
    canvas = cv2.warpPerspective(word, cv2.getPerspectiveTransform(src, quad), (140, 100))
    crop = rectify_quad(canvas, quad, height=20)
    assert crop.shape[0] == 20 and abs(crop.shape[1] - 60) <= 6
    back = cv2.resize(crop, (60, 20), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    assert np.abs(back - word).mean() < 25  # the bars and the red line are back in place
    assert back[5:8, 20:40, 0].mean() > 150 and back[12:18, 21:29].mean() < 60
    with pytest.raises(DataError, match="quadrilateral"):
        rectify_quad(canvas, quad[:3])


def test_crops_cut_from_icdar_ground_truth(tmp_path: Path):
    from vlzoo.ocr.data.icdar import iter_words, read_detection_records
    from vlzoo.ocr.data.toyworld import write_ocr_toyworld

    index = write_ocr_toyworld(tmp_path / "tw", n_train=1, n_val=0, n_test=3, image_size=96, max_words=3)
    legible = [i.text for _, i in iter_words(read_detection_records(index, "test")) if not i.ignore]
    result = cut_icdar_crops(index, "test", tmp_path / "crops", height=32)
    crops = WordCrops(result["labels"], max_length=40, charset="94")
    assert result["written"] == len(legible) == len(crops)
    assert [line.split("\t")[1] for line in result["labels"].read_text().splitlines()] == legible
    assert all(crops[i]["image"].size[1] == 32 for i in range(len(crops)))


def test_str_transform_sizes_and_the_curve():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = 255
    plain = str_transform((32, 128))(image)
    assert plain.shape == (3, 32, 128) and plain.min() == -1.0 and plain.max() == 1.0
    assert (
        plain[0, :, 67:].max() == -1.0 and plain[0, :, :61].min() == 1.0
    )  # stretched: the white half fills the left half
    padded = str_transform((32, 128), keep_aspect=True)(image)
    assert padded[0, 16, 40:].max() == -1.0 and padded[0, 16, :30].min() == 1.0  # 64 px wide, then padding
    trained = str_transform((32, 128), train=True)(image)
    assert trained.shape == (3, 32, 128)
    bars = np.zeros((32, 64, 3), np.uint8)
    bars[14:18] = 255  # a horizontal line bends into a parabola
    curved = Curve(bend_limit=0.3, p=1.0).apply(bars, bend=0.25)
    assert np.array_equal(Curve().apply(bars, bend=0.0), bars)
    rows = [int(np.argmax(curved[:, x, 0])) for x in (0, 32, 63)]
    assert rows[1] == 14 and rows[0] < 10 and rows[2] < 10  # the ends move up by ~8 px


def test_the_core_datamodule_makes_recognition_batches(ocr_words: Path):
    from vlzoo.core.train import ImageTextDataModule

    data = ImageTextDataModule(
        data=str(ocr_words / "train" / "labels.txt"),
        data_kind="word-crops",
        model="dptr-parseq-tiny",
        batch_size=8,
        num_workers=0,
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (8, 3, 32, 128)
    assert batch["text"].shape[0] == 8 and batch["text"].dtype == torch.long
    tok = data._collator(False).tokenizer
    # the dataset keeps the 94-char label; the model's tokenizer folds it to its 36-char charset
    assert tok.decode(batch["text"][:, 1:]) == [
        "".join(ch for ch in c.lower() if ch.isalnum()) for c in batch["captions"]
    ]


def test_clean_crops_are_the_same_words_in_lowercase_and_an_unknown_style_is_refused(tmp_path: Path):
    from vlzoo.core import ConfigError

    varied = WordCrops(write_ocr_words(tmp_path / "varied", n_train=12, n_test=1, seed=3))
    clean = WordCrops(write_ocr_words(tmp_path / "clean", n_train=12, n_test=1, seed=3, style="clean"))
    assert clean.labels == [w.lower() for w in varied.labels]  # the same draws, only the case differs
    assert any(w != w.lower() for w in varied.labels)
    with pytest.raises(ConfigError, match="unknown ocr-words style 'neat'"):
        write_ocr_words(tmp_path / "neat", n_train=1, style="neat")


def test_ocr_words_validation_reads_its_val_split(tmp_path: Path):
    from vlzoo.core.train import ImageTextDataModule

    def datamodule(root: Path, **generate) -> ImageTextDataModule:
        return ImageTextDataModule(
            data="ocr-words",
            val_data="ocr-words",
            data_dir=str(root),
            generate={"n_train": 4, "n_test": 1, "seed": 0, **generate},
            model="dptr-parseq-tiny",
            num_workers=0,
        )

    data = datamodule(tmp_path / "with-val", n_val=3)
    data.prepare_data()
    data.setup("fit")
    val_lines = (tmp_path / "with-val" / "val" / "labels.txt").read_text().splitlines()
    assert data._datasets["val"].labels == [line.split("\t")[1] for line in val_lines]
    assert len(data._datasets["train"]) == 4
    data = datamodule(tmp_path / "no-val")
    data.prepare_data()
    with pytest.raises(DataError, match=r"no val split beside it .* data\.generate\.n_val"):
        data.setup("fit")


def test_random_and_mixed_label_kinds_spell_open_vocabulary_strings(tmp_path: Path):
    from vlzoo.core import ConfigError
    from vlzoo.ocr.data.toyworld import VOCABULARY, sample_label, sample_word

    vocabulary = set(VOCABULARY)
    randoms = WordCrops(write_ocr_words(tmp_path / "r", n_train=40, n_test=1, seed=3, labels="random"))
    assert all(w.isalpha() and w.islower() and 3 <= len(w) <= 10 for w in randoms.labels)
    assert len(set(randoms.labels)) == 40 and not vocabulary & set(randoms.labels)
    mixed = [sample_label(np.random.default_rng(i), "mixed") for i in range(200)]
    in_vocabulary = sum(w in vocabulary or w.lower() in vocabulary for w in mixed)
    assert 70 <= in_vocabulary <= 130  # about half words, half random strings
    # `vocabulary` draws exactly what `sample_word` draws: existing ocr-words files stay as they were
    assert [sample_label(np.random.default_rng(i)) for i in range(20)] == [
        sample_word(np.random.default_rng(i)) for i in range(20)
    ]
    with pytest.raises(ConfigError, match="unknown ocr-words label kind 'names'"):
        write_ocr_words(tmp_path / "n", n_train=1, labels="names")
    with pytest.raises(ConfigError, match="unknown label kind 'names'"):
        sample_label(np.random.default_rng(0), "names")


def test_a_generated_lexicon_is_distinct_seeded_strings_and_label_lists_spell_exact_crops(tmp_path: Path):
    from vlzoo.core import ConfigError
    from vlzoo.ocr.data.toyworld import generated_lexicon

    lexicon = generated_lexicon(300, seed=4, lengths=(3, 5))
    assert len(lexicon) == len(set(lexicon)) == 300
    assert all(w.isalpha() and w.islower() and 3 <= len(w) <= 5 for w in lexicon)
    assert generated_lexicon(300, seed=4, lengths=(3, 5)) == lexicon  # seeded
    assert generated_lexicon(100, seed=4, lengths=(3, 5)) == lexicon[:100]  # a prefix: same order
    assert generated_lexicon(100, seed=5, lengths=(3, 5)) != lexicon[:100]
    with pytest.raises(ConfigError, match="a lexicon of 400 strings of lengths \\(1, 1\\)"):
        generated_lexicon(400, lengths=(1, 1))  # only 26 one-letter strings exist

    lists = {"train": ["abc", "xyz", "abc"], "test": ["qrs"]}
    train = WordCrops(write_ocr_words(tmp_path / "l", n_train=50, n_test=9, style="clean", label_lists=lists))
    assert train.labels == ["abc", "xyz", "abc"]
    assert WordCrops(tmp_path / "l" / "test" / "labels.txt").labels == ["qrs"]
    first, third = (cv2.imread(str(tmp_path / "l" / "train" / f"00000{i}.png")) for i in (0, 2))
    assert first.shape != third.shape or not np.array_equal(first, third)  # same word, another rendering
    with pytest.raises(ConfigError, match="needs a non-empty 'train' list"):
        write_ocr_words(tmp_path / "e", label_lists={"test": ["abc"]})
