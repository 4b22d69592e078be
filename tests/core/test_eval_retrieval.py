"""vlzoo.core.eval.retrieval against a naive reference: the full similarity matrix, one sort per query."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import retrieval_metrics, retrieval_ranks


def reference_ranks(image_features, text_features, text_to_image, ties="optimistic"):
    """0-based ranks from the full matrix: sort every query's gallery, find the first correct item.

    Among equal scores the correct items come first (optimistic) or last (pessimistic); the index breaks
    the remaining ties, which only reorders wrong items among themselves.
    """
    sim = (image_features.double() @ text_features.double().T).tolist()  # [N_img][N_txt]
    t2i = text_to_image.tolist()
    n_img, n_txt = len(sim), len(t2i)

    def tie_key(correct: bool) -> int:
        return (0 if correct else 1) if ties == "optimistic" else (1 if correct else 0)

    i2t = []
    for i in range(n_img):
        if i not in t2i:
            i2t.append(-1)
            continue
        order = sorted(range(n_txt), key=lambda j: (-sim[i][j], tie_key(t2i[j] == i), j))
        i2t.append(next(pos for pos, j in enumerate(order) if t2i[j] == i))
    t2i_ranks = []
    for j in range(n_txt):
        order = sorted(range(n_img), key=lambda i: (-sim[i][j], tie_key(i == t2i[j]), i))
        t2i_ranks.append(order.index(t2i[j]))
    return i2t, t2i_ranks


def reference_metrics(i2t, t2i, ks=(1, 5, 10)):
    metrics, recalls = {}, []
    for name, ranks in (("image_to_text", [r for r in i2t if r >= 0]), ("text_to_image", t2i)):
        for k in ks:
            value = 100.0 * sum(r < k for r in ranks) / len(ranks)
            metrics[f"{name}_R@{k}"] = value
            recalls.append(value)
        metrics[f"{name}_median_rank"] = math.floor(np.median(ranks)) + 1  # VSE++'s definition
    metrics["mean_recall"] = sum(recalls) / len(recalls)
    return metrics


def variable_captions(n_images: int, seed: int, allow_empty: bool = True) -> torch.Tensor:
    """text_to_image with 0 to 5 captions per image, shuffled so an image's captions aren't contiguous."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(0 if allow_empty else 1, 6, (n_images,), generator=gen)
    counts[0], counts[1], counts[2] = 1, 5, 0 if allow_empty else 2
    t2i = torch.repeat_interleave(torch.arange(n_images), counts)
    return t2i[torch.randperm(t2i.numel(), generator=gen)]


def random_features(n: int, dim: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=gen, dtype=torch.float64), dim=-1).to(dtype)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 16, 37, 1000, None])
def test_matches_full_matrix_reference_with_variable_captions(chunk_size):
    # float64 so that no two random scores are within rounding of each other: the chunked products and
    # the reference's full product may differ in the last bit.
    t2i = variable_captions(37, seed=0)
    images = random_features(37, 16, seed=1)
    # Captions near their image, so that ranks spread over the whole range rather than being all ~N/2.
    texts = F.normalize(images[t2i] + 1.2 * random_features(t2i.numel(), 16, seed=2), dim=-1)
    ref_i2t, ref_t2i = reference_ranks(images, texts, t2i)
    i2t, t2i_ranks = retrieval_ranks(images, texts, t2i, chunk_size=chunk_size)
    assert i2t.tolist() == ref_i2t
    assert t2i_ranks.tolist() == ref_t2i
    assert len(set(ref_t2i)) > 5  # the test is not degenerate
    metrics = retrieval_metrics(images, texts, t2i, chunk_size=chunk_size)
    assert metrics == pytest.approx(reference_metrics(ref_i2t, ref_t2i))


def test_counts_of_galleries_wider_than_float32_exact_range(monkeypatch):
    # Galleries above 2**24 items are counted in column slices; shrink the slice to exercise that path.
    from vlzoo.core.eval import retrieval

    t2i = variable_captions(20, seed=13)
    images = random_features(20, 8, seed=14)
    texts = random_features(t2i.numel(), 8, seed=15)
    expected = retrieval_ranks(images, texts, t2i, chunk_size=6)
    monkeypatch.setattr(retrieval, "_EXACT_COUNT_COLUMNS", 3)
    sliced = retrieval_ranks(images, texts, t2i, chunk_size=6)
    assert sliced[0].tolist() == expected[0].tolist() == reference_ranks(images, texts, t2i)[0]
    assert sliced[1].tolist() == expected[1].tolist()


@pytest.mark.parametrize("ties", ["optimistic", "pessimistic"])
@pytest.mark.parametrize("chunk_size", [1, 4, 9, None])
def test_ties_follow_the_documented_rule(ties, chunk_size):
    # Entries in {-1, 0, 1}: every dot product is a small integer, exact in float32, so scores tie often.
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(-1, 2, (23, 4), generator=gen).float()
    t2i = variable_captions(23, seed=4)
    texts = torch.randint(-1, 2, (t2i.numel(), 4), generator=gen).float()
    ref_i2t, ref_t2i = reference_ranks(images, texts, t2i, ties=ties)
    i2t, t2i_ranks = retrieval_ranks(images, texts, t2i, chunk_size=chunk_size, ties=ties)
    assert i2t.tolist() == ref_i2t
    assert t2i_ranks.tolist() == ref_t2i


def test_all_equal_scores_optimistic_is_perfect_pessimistic_is_last():
    # A collapsed model: every score ties. Optimistic ranks each correct item first, pessimistic after
    # every wrong one; the gap between the two flags the collapse.
    images = F.normalize(torch.ones(4, 8), dim=-1)
    texts = F.normalize(torch.ones(8, 8), dim=-1)
    t2i = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    i2t, t2i_ranks = retrieval_ranks(images, texts, t2i, ties="optimistic")
    assert i2t.tolist() == [0] * 4
    assert t2i_ranks.tolist() == [0] * 8
    i2t, t2i_ranks = retrieval_ranks(images, texts, t2i, ties="pessimistic", chunk_size=3)
    assert i2t.tolist() == [6] * 4  # the 6 captions of the other images come first
    assert t2i_ranks.tolist() == [3] * 8  # the 3 other images come first
    # image->text R@1, R@5, R@10 = 0, 0, 100; text->image = 0, 100, 100
    assert retrieval_metrics(images, texts, t2i, ties="pessimistic")["mean_recall"] == pytest.approx(50.0)


def test_perfect_features_give_recall_100():
    images = random_features(200, 64, seed=5, dtype=torch.float32)
    t2i = torch.arange(200).repeat_interleave(5)
    texts = F.normalize(images[t2i] + 0.01 * random_features(1000, 64, seed=6, dtype=torch.float32), dim=-1)
    metrics = retrieval_metrics(images, texts, t2i, chunk_size=64)
    for key in ("image_to_text_R@1", "text_to_image_R@1", "mean_recall"):
        assert metrics[key] == 100.0
    assert metrics["image_to_text_median_rank"] == metrics["text_to_image_median_rank"] == 1.0


def test_random_features_give_chance_level():
    n_img = 500
    images = random_features(n_img, 256, seed=7, dtype=torch.float32)
    t2i = torch.arange(n_img).repeat_interleave(5)
    texts = random_features(5 * n_img, 256, seed=8, dtype=torch.float32)
    m = retrieval_metrics(images, texts, t2i, chunk_size=100)
    # Chance: text->image R@10 = 10/500 = 2%; image->text R@10 = 1 - (1 - 5/2500)^10 ~ 2%.
    assert m["text_to_image_R@10"] < 5
    assert m["image_to_text_R@10"] < 5
    assert m["mean_recall"] < 3
    # Median rank of a uniform position among 500 images ~ 250; of the best of 5 among 2500 captions,
    # 2500 * (1 - 0.5 ** (1 / 5)) ~ 322.
    assert 180 < m["text_to_image_median_rank"] < 320
    assert 230 < m["image_to_text_median_rank"] < 420


def test_result_keys_and_custom_ks():
    images = random_features(10, 8, seed=9)
    t2i = torch.arange(10).repeat_interleave(2)
    texts = random_features(20, 8, seed=10)
    m = retrieval_metrics(images, texts, t2i)
    assert list(m) == [
        "image_to_text_R@1",
        "image_to_text_R@5",
        "image_to_text_R@10",
        "image_to_text_median_rank",
        "text_to_image_R@1",
        "text_to_image_R@5",
        "text_to_image_R@10",
        "text_to_image_median_rank",
        "mean_recall",
    ]
    m = retrieval_metrics(images, texts, t2i, ks=(1, 50))
    assert m["text_to_image_R@50"] == m["image_to_text_R@50"] == 100.0  # K above the gallery size


def test_half_precision_inputs_are_ranked_in_float32():
    images = random_features(30, 32, seed=11, dtype=torch.float32)
    t2i = torch.arange(30).repeat_interleave(3)
    texts = F.normalize(images[t2i] + 0.5 * random_features(90, 32, seed=12, dtype=torch.float32), dim=-1)
    half = retrieval_ranks(images.half(), texts.half(), t2i, chunk_size=7)
    ref = reference_ranks(images.half().float(), texts.half().float(), t2i)
    assert half[0].tolist() == ref[0]
    assert half[1].tolist() == ref[1]


@pytest.mark.parametrize(
    ("images", "texts", "t2i", "match"),
    [
        (torch.randn(4, 8), torch.randn(6, 7), torch.zeros(6, dtype=torch.long), r"\(4, 8\).*\(6, 7\)"),
        (torch.randn(4, 8), torch.randn(6, 8), torch.zeros(5, dtype=torch.long), r"\[6\].*\(5,\)"),
        (torch.randn(4, 8), torch.randn(6, 8), torch.full((6,), 4), r"\[0, 4\)"),
        (torch.randn(4, 8), torch.randn(6, 8), torch.zeros(6), "integer"),
        (torch.randn(4), torch.randn(6, 8), torch.zeros(6, dtype=torch.long), r"image_features.*\(4,\)"),
        (torch.full((4, 8), float("nan")), torch.randn(6, 8), torch.zeros(6, dtype=torch.long), "NaN"),
        (
            torch.randn(4, 8),
            torch.randn(6, 8).index_fill(0, torch.tensor([5]), float("inf")),
            torch.zeros(6, dtype=torch.long),
            "text_features.*infinite",
        ),
    ],
)
def test_bad_inputs_raise_data_error_naming_shapes(images, texts, t2i, match):
    with pytest.raises(DataError, match=match):
        retrieval_metrics(images, texts, t2i)


@pytest.mark.parametrize("kwargs", [{"chunk_size": 0}, {"chunk_size": 2.5}, {"ties": "random"}, {"ks": (0,)}])
def test_bad_options_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        retrieval_metrics(torch.randn(4, 8), torch.randn(4, 8), torch.arange(4), **kwargs)
    assert issubclass(ConfigError, ValueError)


def test_huge_finite_values_are_not_mistaken_for_infinities():
    # Their sum overflows float32; each value is finite, so the exact check must accept them.
    images = torch.full((3, 4), 3e38)
    ranks = retrieval_ranks(images, torch.full((3, 4), 1e-38), torch.arange(3))
    assert ranks[1].shape == (3,)


def test_pair_scores_follow_winogrounds_definitions():
    from vlzoo.core.eval import PAIR_SCORE_CHANCE, pair_scores

    # four images in two pairs, two captions each (the second caption is never used: first captions only)
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.1]])
    texts = torch.tensor(
        [[1.0, 0.0], [9.0, 9.0], [0.0, 1.0], [9.0, 9.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.2], [0, 0]]
    )
    owners = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    pairs = torch.tensor([[0, 1], [2, 3]])
    scores = pair_scores(images, texts, owners, pairs)
    # pair 0: each image prefers its own caption and each caption its own image: all three scores
    # pair 1: image 3 prefers its caption (1.02 > 1.0), but image 2 scores both captions 1.0 and caption 2
    # scores both images 1.0: a tie is no win, so pair 1 fails all three
    assert scores == {"text_score": 50.0, "image_score": 50.0, "group_score": 50.0, "pairs": 2}
    assert PAIR_SCORE_CHANCE["group_score"] == pytest.approx(100 / 6)
    swapped = pair_scores(images, texts, owners, pairs[:, [1, 0]])
    assert swapped["group_score"] == 50.0  # the order inside a pair doesn't matter


def test_pair_scores_of_random_features_are_near_chance():
    from vlzoo.core.eval import PAIR_SCORE_CHANCE, pair_scores

    g = torch.Generator().manual_seed(0)
    n = 4000
    images = torch.nn.functional.normalize(torch.randn(n, 16, generator=g), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(n, 16, generator=g), dim=-1)
    scores = pair_scores(images, texts, torch.arange(n), torch.arange(n).view(-1, 2))
    for name, chance in PAIR_SCORE_CHANCE.items():
        assert abs(scores[name] - chance) < 3.5, (name, scores[name])


def test_pair_scores_name_a_bad_pairing():
    from vlzoo.core.eval import pair_scores

    with pytest.raises(ValueError, match=r"\[P, 2\]"):
        pair_scores(torch.eye(3), torch.eye(3), torch.arange(3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="needs a caption"):
        pair_scores(torch.eye(3), torch.eye(2), torch.tensor([0, 1]), torch.tensor([[1, 2]]))
