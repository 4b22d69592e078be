"""Zero-shot classifier and metrics, and the encoding helpers, with a lookup-table model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import (
    OPENAI_IMAGENET_TEMPLATES,
    SIMPLE_TEMPLATES,
    encode_images,
    encode_texts,
    zeroshot_classifier,
    zeroshot_metrics,
)

# Each prompt maps to a fixed, deliberately unnormalized vector; the classifier must normalize them.
TEXT_TABLE = {
    "a photo of a cat.": [3.0, 4.0, 0.0],  # unit: (0.6, 0.8, 0)
    "a drawing of a cat.": [2.0, 0.0, 0.0],  # unit: (1, 0, 0)
    "a photo of a dog.": [0.0, 0.0, 5.0],  # unit: (0, 0, 1)
    "a drawing of a dog.": [0.0, 1.0, 0.0],  # unit: (0, 1, 0)
    "a photo of a bird.": [0.0, 3.0, 4.0],  # unit: (0, 0.6, 0.8)
    "a drawing of a bird.": [0.0, 0.0, 0.5],  # unit: (0, 0, 1)
}
PROMPTS = list(TEXT_TABLE)


class LookupModel(nn.Module):
    """encode_text: row lookup of prompt ids; encode_image: the pixels' channel means (a fixed map)."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(list(TEXT_TABLE.values())), requires_grad=False)
        self.text_batches: list[int] = []
        self.modes_seen: list[bool] = []

    def encode_text(self, ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        self.text_batches.append(len(ids))
        self.modes_seen.append(self.training)
        out = self.table[ids]
        return nn.functional.normalize(out, dim=-1) if normalize else out

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        self.modes_seen.append(self.training)
        out = images.mean(dim=(2, 3))
        return nn.functional.normalize(out, dim=-1) if normalize else out


def tokenizer(texts: list[str]) -> torch.Tensor:
    return torch.tensor([PROMPTS.index(t) for t in texts])


@pytest.mark.parametrize("batch_size", [1, 4, 256])
def test_classifier_is_renormalized_mean_of_normalized_templates(batch_size):
    model = LookupModel().train()
    templates = ("a photo of a {}.", lambda c: f"a drawing of a {c}.")  # str.format and callables
    clf = zeroshot_classifier(model, tokenizer, ["cat", "dog", "bird"], templates, batch_size=batch_size)
    # By hand: cat = mean((.6, .8, 0), (1, 0, 0)) = (.8, .4, 0) -> /sqrt(.8); dog = (0, .5, .5) -> /sqrt(.5);
    # bird = (0, .3, .9) -> /sqrt(.9).
    expected = torch.tensor(
        [
            [0.8 / math.sqrt(0.8), 0.4 / math.sqrt(0.8), 0.0],
            [0.0, 0.5 / math.sqrt(0.5), 0.5 / math.sqrt(0.5)],
            [0.0, 0.3 / math.sqrt(0.9), 0.9 / math.sqrt(0.9)],
        ]
    ).T
    assert clf.shape == (3, 3)
    torch.testing.assert_close(clf, expected)
    assert max(model.text_batches) <= batch_size
    assert sum(model.text_batches) == 6
    assert model.modes_seen and not any(model.modes_seen)  # encoded in eval mode ...
    assert model.training  # ... and the caller's mode restored


def test_classifier_rejects_empty_inputs():
    with pytest.raises(ConfigError):
        zeroshot_classifier(LookupModel(), tokenizer, [], SIMPLE_TEMPLATES)
    with pytest.raises(ConfigError):
        zeroshot_classifier(LookupModel(), tokenizer, ["cat"], "a photo of a {}.")  # a str, not a sequence


def test_default_templates_are_open_clips_imagenet_subset():
    metadata = pytest.importorskip("open_clip.zero_shot_metadata")
    assert [t.format("X") for t in OPENAI_IMAGENET_TEMPLATES] == [
        f("X") for f in metadata.SIMPLE_IMAGENET_TEMPLATES
    ]
    assert SIMPLE_TEMPLATES == ("a photo of a {}.",)


def test_metrics_match_hand_computed_values_on_an_imbalanced_set():
    classifier = torch.eye(3)  # logits = features
    rows, labels = [], []
    rows += [[1.0, 0.5, 0.0]] * 8  # class 0: 8 images, all right (top-1 = 0)
    labels += [0] * 8
    rows += [[1.0, 0.0, 0.5], [1.0, 0.5, 0.0]]  # class 1: both wrong; top-2 hit only for the second
    labels += [1, 1]
    rows += [[0.0, 0.0, 1.0], [0.5, 1.0, 0.0]]  # class 2: one right, one wrong with class 2 last
    labels += [2, 2]
    m = zeroshot_metrics(
        torch.tensor(rows), classifier, torch.tensor(labels), k=(1, 2, 5), classnames=["a", "b", "c"]
    )
    assert m["top1_accuracy"] == pytest.approx(100 * 9 / 12)
    assert m["top2_accuracy"] == pytest.approx(100 * 10 / 12)
    assert m["top5_accuracy"] == 100.0  # k above the number of classes: every image is a hit
    assert m["per_class_accuracy"] == pytest.approx({"a": 100.0, "b": 0.0, "c": 50.0})
    assert m["balanced_accuracy"] == pytest.approx(50.0)  # vs 75% accuracy: the majority class hides it


def test_balanced_accuracy_skips_classes_absent_from_labels():
    m = zeroshot_metrics(
        torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0]]), torch.eye(3), torch.tensor([0, 1, 1])
    )
    assert m["per_class_accuracy"] == pytest.approx({0: 100.0, 1: 50.0})
    assert m["balanced_accuracy"] == pytest.approx(75.0)


def test_end_to_end_with_the_lookup_model():
    model = LookupModel()
    clf = zeroshot_classifier(model, tokenizer, ["cat", "dog", "bird"], ("a photo of a {}.",))
    # "Images" whose channel means are the class prototypes: each must be classified as its class.
    images = clf.T[:, :, None, None].expand(3, 3, 4, 4).clone()
    feats = encode_images(
        model,
        [
            {"image": images[:2], "label": torch.tensor([0, 1])},
            {"image": images[2:], "label": torch.tensor([2])},
        ],
    )
    m = zeroshot_metrics(feats.features, clf, feats.labels, k=(1,))
    assert m["top1_accuracy"] == 100.0


@pytest.mark.parametrize(
    ("features", "classifier", "labels"),
    [
        (torch.randn(4, 3), torch.randn(2, 5), torch.zeros(4, dtype=torch.long)),
        (torch.randn(4, 3), torch.randn(3, 5), torch.zeros(3, dtype=torch.long)),
        (torch.randn(4, 3), torch.randn(3, 5), torch.full((4,), 5)),
    ],
)
def test_metrics_reject_mismatched_inputs(features, classifier, labels):
    with pytest.raises(DataError):
        zeroshot_metrics(features, classifier, labels)


def test_encode_images_concatenates_batches_with_labels_and_ids():
    model = LookupModel().train()
    gen = torch.Generator().manual_seed(0)
    batches = [
        {
            "image": torch.rand(3, 3, 5, 5, generator=gen),
            "label": torch.tensor([0, 1, 2]),
            "id": ["a", "b", "c"],
        },
        {"image": torch.rand(2, 3, 5, 5, generator=gen), "label": torch.tensor([1, 1]), "id": ["d", "e"]},
    ]
    out = encode_images(model, batches)
    assert out.features.shape == (5, 3)
    assert out.features.dtype == torch.float32
    torch.testing.assert_close(out.features.norm(dim=-1), torch.ones(5))
    expected = torch.nn.functional.normalize(
        torch.cat([b["image"] for b in batches]).mean(dim=(2, 3)), dim=-1
    )
    torch.testing.assert_close(out.features, expected)
    assert out.labels.tolist() == [0, 1, 2, 1, 1]
    assert out.ids == ["a", "b", "c", "d", "e"]
    assert model.training
    # Without labels in every batch, no labels at all: a partial column can't be aligned with features.
    out = encode_images(
        model, [{"image": torch.rand(2, 3, 4, 4)}, {"image": torch.rand(1, 3, 4, 4), "label": [0]}]
    )
    assert out.labels is None
    assert out.ids is None
    with pytest.raises(DataError, match="image"):
        encode_images(model, [{"pixels": torch.rand(1, 3, 4, 4)}])


def test_encode_texts_batches_and_normalizes():
    model = LookupModel()
    feats = encode_texts(model, tokenizer, PROMPTS, batch_size=4)
    assert model.text_batches == [4, 2]
    torch.testing.assert_close(feats, torch.nn.functional.normalize(model.table.detach(), dim=-1))


def test_real_dual_encoder_and_tokenizer():
    # The registry's tiny CLIP: its tokenizer returns a TokenizedText, its towers run batch by batch.
    import vlzoo.core as vz

    torch.manual_seed(0)
    model = vz.create_model("clip-vit-tiny")
    tok = vz.get_tokenizer("clip-vit-tiny")
    classnames = ["cat", "dog", "red circle"]
    clf = zeroshot_classifier(model, tok, classnames, OPENAI_IMAGENET_TEMPLATES, batch_size=5)
    with torch.no_grad():
        per_class = [
            model.encode_text(tok([t.format(c) for t in OPENAI_IMAGENET_TEMPLATES])) for c in classnames
        ]
    expected = torch.stack([torch.nn.functional.normalize(e.mean(0), dim=0) for e in per_class], dim=1)
    torch.testing.assert_close(clf, expected, atol=1e-5, rtol=1e-4)
    size = model.config.vision.image_size
    loader = [{"image": torch.randn(2, 3, size, size), "label": torch.tensor([0, 2])} for _ in range(2)]
    encoded = encode_images(model, loader)
    metrics = zeroshot_metrics(encoded.features, clf, encoded.labels, classnames=classnames)
    assert set(metrics) == {"top1_accuracy", "top5_accuracy", "balanced_accuracy", "per_class_accuracy"}
    assert metrics["top5_accuracy"] == 100.0  # 3 classes
