"""PTUnifier: prompt selection, the uni-modal paths through the fusion encoder, whole-word masking, hard
negatives, the three losses against their formulas, and a tiny model learning med-toyworld."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from helpers.recipes import fit_recipe

import vlzoo.core as vz
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.towers.tokenizers import TokenizedText
from vlzoo.core.train import ZooModule
from vlzoo.medical import ptunifier
from vlzoo.medical.ptunifier import (
    PTUnifierConfig,
    TextVocabulary,
    sample_hard_negatives,
    select_prompts,
    whole_word_mask,
)

CAPTIONS = [
    "a 12 mm hypodense lesion in the left lobe of the liver.",
    "there is a small calcified nodule in the right lung.",
    "no focal lesion in the liver.",
    "left lung: large solid nodule measuring 30 mm.",
]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return vz.create_model("ptunifier-tiny").eval()


@pytest.fixture(scope="module")
def tokenizer():
    return vz.get_tokenizer("ptunifier-tiny")


@pytest.fixture(scope="module")
def batch(tokenizer):
    generator = torch.Generator().manual_seed(0)
    return {"image": torch.randn(4, 3, 64, 64, generator=generator), "text": tokenizer(CAPTIONS)}


def _backend():
    return ptunifier._bundled_backend()


# ------------------------------------------------------------------------------------ prompt selection


def test_select_prompts_returns_the_top_k_by_dot_product_without_gradient_to_the_query():
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(3, 8, generator=generator, requires_grad=True)
    pool = torch.randn(20, 8, generator=generator, requires_grad=True)
    prompts, indices = select_prompts(query, pool, k=5)
    assert prompts.shape == (3, 5, 8) and indices.shape == (3, 5)
    for row in range(3):
        q, P = query.detach(), pool.detach()
        scores = [sum(float(q[row, d]) * float(P[p, d]) for d in range(8)) for p in range(20)]
        best = sorted(range(20), key=lambda p: -scores[p])[:5]
        assert set(indices[row].tolist()) == set(best)
        torch.testing.assert_close(prompts[row], pool[indices[row]])
    prompts.sum().backward()
    assert query.grad is None  # selection carries no gradient
    times_chosen = torch.bincount(indices.flatten(), minlength=20).float()
    torch.testing.assert_close(pool.grad, times_chosen[:, None].expand(-1, 8))  # the chosen prompts learn


def test_select_prompts_frozen_pool_as_the_official_code():
    query, pool = torch.randn(2, 4), torch.randn(6, 4, requires_grad=True)
    prompts, _ = select_prompts(query, pool, k=3, trainable=False)
    assert not prompts.requires_grad


def _spy_selection(monkeypatch):
    calls = []
    original = ptunifier.select_prompts

    def spy(query, pool, k, trainable=True):
        prompts, indices = original(query, pool, k, trainable)
        calls.append({"query": query.detach().clone(), "pool": pool, "k": k, "indices": indices})
        return prompts, indices

    monkeypatch.setattr(ptunifier, "select_prompts", spy)
    return calls


def _spy_fusion(model):
    calls = []
    handle = model.fusion.register_forward_hook(lambda module, args, out: calls.append(args))
    return calls, handle


def test_image_only_input_runs_through_the_fusion_with_the_selected_textual_prompts(
    model, batch, monkeypatch
):
    images, cfg = batch["image"], model.config
    selections = _spy_selection(monkeypatch)
    fusion_calls, handle = _spy_fusion(model)
    with torch.no_grad():
        features = model.encode_image(images)
    handle.remove()

    # The query: mean over the patches of patch + position embeddings, computed here from the ViT's parts.
    trunk = model.visual.trunk
    with torch.no_grad():
        query = (trunk.patch_embed(images) + trunk.pos_embed[:, 1:]).mean(1)
        expected = (query @ model.text_prompts.T).topk(cfg.num_text_prompts).indices
    (selection,) = selections
    assert selection["pool"] is model.text_prompts and selection["k"] == cfg.num_text_prompts == 8
    for row in range(len(images)):
        assert set(selection["indices"][row].tolist()) == set(expected[row].tolist())

    (args,) = fusion_calls  # one pass through the shared fusion encoder
    text_tokens, image_tokens, text_mask = args[:3]
    assert text_tokens.shape[1] == 1 + cfg.num_text_prompts + 1  # <s> + prompts + </s>
    assert text_mask.all()
    assert image_tokens.shape[1] == 1 + (64 // 16) ** 2  # the real image: class token + patches
    assert features.shape == (4, 64)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(4))

    # Only the selected prompts matter: zeroing every other pool row (whose scores stay below the k-th,
    # positive, best) changes nothing; moving one chosen for image 0 changes image 0's feature.
    assert (query @ model.text_prompts.T).topk(cfg.num_text_prompts).values[:, -1].min() > 0
    unchosen = torch.ones(cfg.text_pool_size, dtype=torch.bool)
    unchosen[expected.flatten()] = False
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.text_prompts[unchosen] = 0.0
        torch.testing.assert_close(perturbed.encode_image(images), features)
        perturbed.text_prompts[expected[0, 0]] += torch.randn(model.text_prompts.shape[1])
        assert not torch.allclose(perturbed.encode_image(images)[0], features[0], atol=1e-4)


def test_text_only_input_runs_through_the_fusion_with_the_selected_visual_prompts(model, batch, monkeypatch):
    text, cfg = batch["text"], model.config
    selections = _spy_selection(monkeypatch)
    fusion_calls, handle = _spy_fusion(model)
    with torch.no_grad():
        features = model.encode_text(text)
    handle.remove()

    # The query: mean of the caption's token embeddings over its real tokens after <s>.
    with torch.no_grad():
        embeddings = model.text.embeddings(input_ids=text.input_ids)
    real = text.attention_mask[:, 1:, None].float()
    query = (embeddings[:, 1:] * real).sum(1) / real.sum(1)
    expected = (query @ model.visual_prompts.T).topk(cfg.num_visual_prompts).indices
    (selection,) = selections
    assert selection["pool"] is model.visual_prompts and selection["k"] == cfg.num_visual_prompts == 16
    torch.testing.assert_close(selection["query"], query)
    for row in range(len(CAPTIONS)):
        assert set(selection["indices"][row].tolist()) == set(expected[row].tolist())

    (args,) = fusion_calls
    text_tokens, image_tokens, text_mask = args[:3]
    assert image_tokens.shape[1] == 1 + cfg.num_visual_prompts  # class embedding + prompts
    longest = int(text.attention_mask.sum(1).max())  # padding after the longest caption is cut
    assert text_tokens.shape[1] == longest < text.input_ids.shape[1]
    assert torch.equal(text_mask, text.attention_mask[:, :longest])

    assert (query @ model.visual_prompts.T).topk(cfg.num_visual_prompts).values[:, -1].min() > 0
    unchosen = torch.ones(cfg.visual_pool_size, dtype=torch.bool)
    unchosen[expected.flatten()] = False
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.visual_prompts[unchosen] = 0.0
        torch.testing.assert_close(perturbed.encode_text(text), features)
        # (a random change: a constant one would vanish in the ViT's first LayerNorm)
        perturbed.visual_prompts[expected[1, 0]] += torch.randn(model.visual_prompts.shape[1])
        assert not torch.allclose(perturbed.encode_text(text)[1], features[1], atol=1e-4)


def test_image_stream_is_the_vits_own_forward(model, batch):
    stream, _ = model.image_stream(batch["image"])
    with torch.no_grad():
        torch.testing.assert_close(stream.tokens, model.visual.trunk.forward_features(batch["image"]))


def test_a_captions_features_ignore_the_padding_its_batch_gives_it(model, tokenizer):
    alone = tokenizer(["no focal lesion in the liver."])
    padded = tokenizer(
        ["no focal lesion in the liver.", "a 12 mm hypodense lesion in the left lobe of the liver"]
    )
    assert padded.attention_mask[0].sum() < padded.attention_mask[1].sum()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_text(padded)[0], model.encode_text(alone)[0], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(
            model.itm_logits(images, padded)[0], model.itm_logits(images[:1], alone)[0], atol=1e-5, rtol=1e-5
        )


# ------------------------------------------------------------------------------------ whole-word MLM


def _words_of_tokens(caption: str) -> list[int | None]:
    """Word index (whitespace-separated) of each token, from the tokenizer's character offsets."""
    encoded = _backend()(caption, return_offsets_mapping=True, max_length=32, padding="max_length")
    spans, start = [], 0
    for word in caption.split(" "):
        spans.append((start, start + len(word)))
        start += len(word) + 1
    words = []
    for token_id, (begin, _) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        if token_id in _backend().all_special_ids:
            words.append(None)
        else:
            words.append(next(i for i, (a, b) in enumerate(spans) if a <= begin < b))
    return words


def test_whole_word_masking_masks_every_piece_of_a_word_and_never_a_special_token(tokenizer, model):
    captions = [
        "a hypodensity in the kidneys with pneumothorax",
        "lesions of the livers and splenomegaly",
        "x-ray: 12mm lesion. bronchiectasis",
        "no focal lesion",
    ] * 16
    text = tokenizer(captions)
    vocab = model._vocabulary()
    multi_piece = 0
    for seed in range(10):
        generator = torch.Generator().manual_seed(seed)
        masked, labels = whole_word_mask(text.input_ids, text.attention_mask, vocab, 640, 0.15, generator)
        predicted = labels != -100
        assert torch.equal(labels[predicted], text.input_ids[predicted])
        assert torch.equal(masked[~predicted], text.input_ids[~predicted])  # nothing else touched
        special = torch.isin(text.input_ids, torch.tensor(_backend().all_special_ids))
        assert not (predicted & special).any()
        for row, caption in enumerate(captions):
            words = _words_of_tokens(caption)
            chosen = {words[t] for t in range(32) if predicted[row, t]}
            assert chosen, "every caption predicts at least one word"
            for word in chosen:
                pieces = [t for t in range(32) if words[t] == word]
                assert all(predicted[row, t] for t in pieces), (caption, word)
                multi_piece += len(pieces) > 1
            # budget: round(0.15 × real tokens), the first word drawn always taken
            n_real = sum(w is not None for w in words)
            largest = max(sum(1 for w in words if w == word) for word in chosen)
            assert int(predicted[row].sum()) <= max(round(0.15 * n_real), largest)
    assert multi_piece > 20  # the captions do exercise words of several tokens


def test_whole_word_masking_follows_the_80_10_10_rule(tokenizer, model):
    text = tokenizer(["a 12 mm hypodense lesion in the left lobe of the liver"] * 4000)
    generator = torch.Generator().manual_seed(0)
    masked, labels = whole_word_mask(
        text.input_ids, text.attention_mask, model._vocabulary(), 640, 0.15, generator
    )
    predicted = labels != -100
    n = int(predicted.sum())
    as_mask = int((masked[predicted] == _backend().mask_token_id).sum()) / n
    unchanged = int((masked[predicted] == labels[predicted]).sum()) / n
    # the random 10% can draw the original token (1/640) or <mask>, both negligible here
    assert as_mask == pytest.approx(0.8, abs=0.02)
    assert unchanged == pytest.approx(0.1, abs=0.02)
    assert 1 - as_mask - unchanged == pytest.approx(0.1, abs=0.02)
    # 13 real tokens → a budget of 2 tokens per caption
    assert predicted.sum(1).float().mean() == pytest.approx(2.0, abs=0.3)


def test_word_starts_come_from_the_vocabularys_markers():
    backend = _backend()
    vocab = TextVocabulary.from_tokenizer(backend, len(backend))
    tokens = backend.convert_ids_to_tokens(list(range(len(backend))))
    assert all(vocab.word_start[i] == t.startswith("Ġ") for i, t in enumerate(tokens))
    assert vocab.special[[backend.cls_token_id, backend.sep_token_id, backend.pad_token_id]].all()
    assert (vocab.cls_id, vocab.pad_id, vocab.sep_id, vocab.mask_id) == (0, 1, 2, 4)  # RoBERTa's layout


# ----------------------------------------------------------------------------------- hard negatives


def test_hard_negatives_are_never_the_positive_and_follow_the_softmax():
    # Row i's similarity to column j depends on the offset (j - i) mod n only: 5 for itself (the positive),
    # 2, 1, 0 for the next three columns, nothing for the rest; one call gives n draws of that distribution.
    n = 2000
    offsets = (torch.arange(n)[None, :] - torch.arange(n)[:, None]) % n
    by_offset = torch.full((n,), -1e4)
    by_offset[:4] = torch.tensor([5.0, 2.0, 1.0, 0.0])
    exclude = torch.zeros(n, n, dtype=torch.bool)
    odd = torch.arange(1, n, 2)
    exclude[odd, (odd + 2) % n] = True  # odd rows: the caption at offset 2 is their own caption again
    draws = sample_hard_negatives(by_offset[offsets], exclude, torch.Generator().manual_seed(0))
    drawn = (draws - torch.arange(n)) % n
    assert drawn.ne(0).all()  # never the positive
    even, odd_drawn = drawn[0::2], drawn[1::2]
    assert odd_drawn.ne(2).all()  # never an excluded one
    weights = torch.tensor([math.exp(2), math.exp(1), 1.0])
    frequencies = torch.bincount(even, minlength=4)[1:].float() / len(even)
    torch.testing.assert_close(frequencies, weights / weights.sum(), atol=0.05, rtol=0)  # ~3 sigma
    odd_frequencies = torch.bincount(odd_drawn, minlength=4)[[1, 3]].float() / len(odd_drawn)
    torch.testing.assert_close(odd_frequencies, weights[[0, 2]] / weights[[0, 2]].sum(), atol=0.05, rtol=0)


def test_hard_negatives_fall_back_when_every_caption_is_the_same():
    everything = torch.ones(3, 3, dtype=torch.bool)
    draws = torch.stack([sample_hard_negatives(torch.zeros(3, 3), everything) for _ in range(100)])
    assert not (draws == torch.arange(3)).any()
    with pytest.raises(DataError, match="at least 2 pairs"):
        sample_hard_negatives(torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.bool))


# -------------------------------------------------------------------------------------------- losses


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of -log softmax at the target, written out."""
    log_norm = torch.log(torch.exp(logits).sum(-1))
    return (log_norm - logits[torch.arange(len(targets)), targets]).mean()


@pytest.fixture(scope="module")
def forward(model, batch):
    torch.manual_seed(1)
    with torch.no_grad():
        return model(batch)


def test_itc_loss_is_clips_symmetric_cross_entropy_at_temperature_0_1(model, batch, forward):
    with torch.no_grad():
        images, texts = model.encode_image(batch["image"]), model.encode_text(batch["text"])
    logits = images @ texts.T / 0.1
    targets = torch.arange(4)
    expected = (_cross_entropy(logits, targets) + _cross_entropy(logits.T, targets)) / 2
    torch.testing.assert_close(forward["itc_loss"], expected, atol=1e-5, rtol=1e-5)


def test_itm_loss_scores_positives_and_one_hard_negative_each_way(model, batch, forward):
    image_index, text_index = forward["itm_image_index"], forward["itm_text_index"]
    assert torch.equal(image_index[:4], torch.arange(4)) and torch.equal(text_index[:4], torch.arange(4))
    assert torch.equal(image_index[4:8], torch.arange(4))  # each image with a drawn caption
    assert torch.equal(text_index[8:], torch.arange(4))  # each caption with a drawn image
    assert torch.equal(forward["itm_labels"], (image_index == text_index).long())
    assert forward["itm_labels"].sum() == 4
    text = batch["text"]
    pairs = TokenizedText(text.input_ids[text_index], text.attention_mask[text_index])
    with torch.no_grad():
        logits = model.itm_logits(batch["image"][image_index], pairs)
    torch.testing.assert_close(
        forward["itm_loss"], _cross_entropy(logits, forward["itm_labels"]), atol=1e-5, rtol=1e-5
    )


def test_mlm_loss_predicts_the_masked_words_from_the_fused_caption(model, batch, forward):
    masked, labels = forward["mlm_input_ids"], forward["mlm_labels"]
    length = masked.shape[1]
    ids, mask = batch["text"].input_ids[:, :length], batch["text"].attention_mask[:, :length]
    assert ((labels != -100) & (masked != ids)).any()
    with torch.no_grad():
        caption, _ = model.text_stream(TokenizedText(masked, mask))
        image, _ = model.image_stream(batch["image"])
        logits = model.mlm_head(model.fuse(caption, image).text_tokens)
    predicted = labels != -100
    expected = _cross_entropy(logits[predicted], labels[predicted])
    torch.testing.assert_close(forward["mlm_loss"], expected, atol=1e-5, rtol=1e-5)


def test_total_loss_weights_are_the_papers(forward):
    expected = 0.5 * forward["itm_loss"] + 1.0 * forward["mlm_loss"] + 0.1 * forward["itc_loss"]
    torch.testing.assert_close(forward["loss"], expected)


def test_itm_scores_pair_each_caption_with_its_own_image(model, batch):
    text = batch["text"]
    owners = torch.tensor([0, 0, 1, 3])  # two captions of image 0, none of image 2
    scores = model.itm_scores({"image": batch["image"], "text": text, "text_to_image": owners})
    with torch.no_grad():
        logits = model.itm_logits(batch["image"][owners], text)
    torch.testing.assert_close(scores, torch.softmax(logits, -1)[:, 1])
    assert scores.shape == (4,) and ((scores > 0) & (scores < 1)).all()


def test_a_training_step_reaches_the_prompts_towers_and_heads(batch):
    torch.manual_seed(0)
    model = vz.create_model("ptunifier-tiny").train()
    model(batch)["loss"].backward()
    for name in ("visual_prompts", "text_prompts", "itm_head.weight", "itc_head.image_proj.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    assert model.mlm_head.decoder.weight.grad.abs().sum() > 0
    assert model.visual.trunk.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.text.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    # only the selected prompts learn: the rows no caption or image chose get no gradient
    assert (model.visual_prompts.grad.abs().sum(1) == 0).sum() >= 128 - 4 * 16
    assert (model.text_prompts.grad.abs().sum(1) > 0).sum() <= 4 * 8


# ------------------------------------------------------------------------------------ registry / config


@pytest.mark.parametrize(
    ("option", "key", "face"),
    [
        ({"loss": {"name": "clip"}}, "model.loss", "set_loss"),
        ({"lock_image_tower": 0}, "model.lock_image_tower", "lock_image_tower"),
        ({"lock_text_tower": 0}, "model.lock_text_tower", "lock_text_tower"),
    ],
)
def test_a_recipe_option_ptunifier_cannot_honour_is_refused_naming_it(option, key, face):
    """Its ITC loss is fixed by the paper (a softmax at 0.1 between fused features) and its towers feed the
    prompt pools: a recipe's `loss:` or LiT locking would otherwise be a silent no-op or an AttributeError."""
    with pytest.raises(ConfigError, match=rf"{key}: model 'ptunifier-tiny' \(PTUnifier\).*no {face}\(\)"):
        ZooModule("ptunifier-tiny", export_weights=False, **option)


def test_registered_configs_carry_the_papers_settings(tokenizer):
    base = vz.get_model_config("ptunifier-base")
    assert isinstance(base, PTUnifierConfig)
    assert (base.visual_pool_size, base.text_pool_size) == (2048, 2048)
    assert (base.num_visual_prompts, base.num_text_prompts) == (49, 32)
    assert (base.fusion.num_layers, base.fusion.hidden_size, base.fusion.num_heads) == (6, 768, 12)
    assert (base.itm_weight, base.mlm_weight, base.itc_weight, base.itc_temperature) == (0.5, 1.0, 0.1, 0.1)
    assert base.vision.timm_model.startswith("vit_base_patch16_clip_224")
    assert base.text_model == "allenai/biomed_roberta_base" and base.prompt_init_std == 0.02
    # the tiny model's tokenizer is built offline, RoBERTa-style, and reads unseen words byte by byte
    out = tokenizer(["pneumoperitoneum"])
    assert out.input_ids[0, 0] == 0 and 2 in out.input_ids[0].tolist()
    assert tokenizer.decode(out.input_ids[0]) == "pneumoperitoneum"
    assert vz.get_tokenizer("ptunifier-tiny")(CAPTIONS).input_ids.equal(tokenizer(CAPTIONS).input_ids)


# ------------------------------------------------------------------------------------- training


@pytest.mark.slow
def test_tiny_recipe_learns_med_toyworld(tmp_path):
    """The tiny recipe, shortened (256 training cases, 8 epochs of 8 steps), learns which reports go with
    which slices: each validation slice's top report by the ITC (dual-encoder) path names its region."""
    run = fit_recipe(
        "ptunifier-tiny",
        {
            "trainer.max_epochs": 8,
            "trainer.default_root_dir": str(tmp_path),
            "model.export_weights": False,
            "data.data_dir": str(tmp_path / "med-toyworld"),
            "data.generate": {"n_train": 256, "n_val": 64, "n_test": 4, "seed": 0},
            "data.num_workers": 0,
            "data.eval_batch_size": 64,
        },
        test=False,
    )
    module, data = run.module, run.datamodule
    assert run.trainer.global_step == 8 * 256 // 32

    model = module.model.eval()
    data.setup("validate")
    (batch,) = list(data.val_dataloader())
    first = torch.stack(
        [torch.nonzero(batch["text_to_image"] == i)[0, 0] for i in range(len(batch["image"]))]
    )
    text = TokenizedText(batch["text"].input_ids[first], batch["text"].attention_mask[first])
    regions = [case["region"] for case in batch["case"]]
    with torch.no_grad():
        similarity = model.encode_image(batch["image"]) @ model.encode_text(text).T
    top_report = similarity.argmax(1)
    region_r1 = sum(regions[int(j)] == regions[i] for i, j in enumerate(top_report)) / len(regions)
    chance = sum((regions.count(r) / len(regions)) ** 2 for r in set(regions))
    assert 0.4 < chance < 0.6  # chest and abdomen slices in about equal numbers
    assert region_r1 >= 0.85, (region_r1, chance)
