"""DPTR: the pseudo-visual memory (official shape, no gradient into CLIP), ORP only in training at its scale,
stages, the ORP bank command, and text-only pre-training that reads the CLIP memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlzoo.core import ConfigError, create_model
from vlzoo.core.weights import save
from vlzoo.ocr.cli import main
from vlzoo.ocr.data.labels import CharTokenizer
from vlzoo.ocr.dptr import load_orp_bank


@pytest.fixture(scope="module")
def orp_bank(tiny_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ORP bank written by the command from 5 text-free images (one unreadable file is skipped)."""
    from vlzoo.ocr.data.toyworld import sample_background

    root = tmp_path_factory.mktemp("orp")
    (root / "images").mkdir()
    for i in range(5):
        image = sample_background(np.random.default_rng(i), (80, 80))
        Image.fromarray(image).save(root / "images" / f"{i}.png")
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    argv = ["orp-bank", str(root / "images"), str(root / "bank.safetensors"), "--clip", "clip-vit-tiny"]
    assert main([*argv, "--clip-pretrained", str(tiny_clip)]) == 0
    return root / "bank.safetensors"


def _pretrain(tiny_clip: Path, **overrides):
    torch.manual_seed(0)
    return create_model("dptr-parseq-tiny", stage="pretrain", clip_pretrained=str(tiny_clip), **overrides)


def test_orp_bank_holds_the_projected_class_and_patch_tokens(orp_bank: Path, tiny_clip: Path):
    bank = load_orp_bank(orp_bank)
    assert bank.shape == (5, 1 + (64 // 8) ** 2, 64)  # clip-vit-tiny: 64 px, patch 8, 64-d
    clip = create_model("clip-vit-tiny", pretrained=tiny_clip).eval()
    image = Image.open(orp_bank.parent / "images" / "0.png").convert("RGB")
    from vlzoo.core import get_transforms

    with torch.no_grad():
        pooled = clip.encode_image(get_transforms(clip, train=False)(image)[None], normalize=False)
    assert torch.allclose(bank[0, 0], pooled[0], atol=1e-5)


def test_pseudo_visual_memory_has_the_official_shape_and_content(tiny_clip: Path):
    model = _pretrain(tiny_clip)
    assert model.prompts(["Caf\u00e9 24h!"]) == ["a photo of a 'cafe24h'"]  # the label normalized (36 chars)
    memory = model.pseudo_visual_memory(["open", "Exit"])
    assert memory.shape == (2, 1 + 32, 64)  # EOT embedding + every one of the 32 context tokens
    clip, tokenizer = model.clip()
    ids = tokenizer(["a photo of a 'open'", "a photo of a 'exit'"])
    with torch.no_grad():
        hidden = clip.text.transformer(input_ids=ids.input_ids).last_hidden_state  # after ln_final
        eot = clip.encode_text(ids, normalize=False)  # the EOT state through the text projection
    assert torch.allclose(memory[:, 1:], hidden, atol=1e-5)
    assert torch.allclose(memory[:, 0], eot, atol=1e-5)
    # encode_text: that EOT embedding, normalized, from labels or from the model's own token ids
    unit = torch.nn.functional.normalize(eot, dim=-1)
    assert torch.allclose(model.encode_text(["open", "Exit"]), unit, atol=1e-5)
    assert torch.allclose(model.encode_text(model.config.tokenizer()(["open", "exit"])), unit, atol=1e-5)


def test_no_gradient_reaches_clip_and_clip_is_not_part_of_the_model(tiny_clip: Path):
    model = _pretrain(tiny_clip).train()
    tok = CharTokenizer("0123456789abcdefghijklmnopqrstuvwxyz", 16)
    labels = ["open", "taxi", "no5"]
    out = model({"text": tok(labels), "captions": labels, "image": torch.zeros(3, 3, 32, 128)})
    out["loss"].backward()
    clip, _ = model.clip()
    assert all(p.grad is None and not p.requires_grad for p in clip.parameters())
    assert not model.pseudo_visual_memory(labels).requires_grad
    assert not any(k.startswith(("clip", "_frozen")) for k in model.state_dict())
    # the pretrain stage trains the decoder only: ViT and FMU are frozen and get no gradient
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert all(
        p.grad is None and not p.requires_grad for p in [*model.encoder.parameters(), *model.fmu.parameters()]
    )


def test_orp_changes_the_memory_by_its_scale_in_training_only(tiny_clip: Path, orp_bank: Path):
    model = _pretrain(tiny_clip, orp_bank=str(orp_bank), orp_scale=0.1)
    memory = model.pseudo_visual_memory(["open", "exit", "bank"])
    bank = load_orp_bank(orp_bank)
    model.eval()
    assert torch.equal(model.perturb(memory), memory)
    model.train()
    noisy = model.perturb(memory, torch.Generator().manual_seed(3))
    # the same draws as the model makes: 3 distinct bank images, 33 distinct token positions of them
    gen = torch.Generator().manual_seed(3)
    rows, cols = torch.randperm(5, generator=gen)[:3], torch.randperm(65, generator=gen)[:33]
    assert torch.allclose(noisy - memory, 0.1 * bank[rows][:, cols], atol=1e-6)
    assert len(set(rows.tolist())) == 3 and len(set(cols.tolist())) == 33
    model.config.orp_scale = 0.3
    again = model.perturb(memory, torch.Generator().manual_seed(3))
    assert torch.allclose(again - memory, 3 * (noisy - memory), atol=1e-5)


def test_stages_and_a_pretraining_checkpoint_loading_into_fine_tuning(tiny_clip: Path, tmp_path: Path):
    pre = _pretrain(tiny_clip)
    path = save(pre, tmp_path / "pre.safetensors")
    fine = create_model("dptr-parseq-tiny", pretrained=path, stage="finetune")
    assert fine.config.stage == "finetune"
    assert all(
        torch.equal(a, b)
        for a, b in zip(pre.decoder.state_dict().values(), fine.decoder.state_dict().values())
    )
    assert all(p.requires_grad for p in fine.parameters())
    frozen = create_model("dptr-parseq-tiny", pretrained=path, stage="finetune", freeze_decoder=True)
    assert not any(p.requires_grad for p in frozen.decoder.parameters())
    assert all(p.requires_grad for p in [*frozen.encoder.parameters(), *frozen.fmu.parameters()])
    memory = fine.visual_memory(torch.randn(2, 3, 32, 128))
    assert memory.shape == (2, 17, 64)  # FMU: max_length + 1 queries
    with pytest.raises(ConfigError, match="stage must be one of"):
        create_model("dptr-parseq-tiny", stage="both")


def test_a_clip_of_another_width_is_refused(tiny_clip: Path):
    model = _pretrain(tiny_clip, decoder={"embed_dim": 32})  # clip-vit-tiny's text is 64-d
    with pytest.raises(ConfigError, match="must both equal the decoder's embed_dim 32"):
        model.pseudo_visual_memory(["a"])


@pytest.mark.slow
def test_text_only_pretraining_reads_words_from_the_clip_memory(tiny_clip: Path, tmp_path: Path):
    """The decoder learns to read CLIP's text memory: 8 words, trained on text alone, read back (AR +
    refinement) far above chance (a random decoder reads none); the ZooModule's validation logs that word
    accuracy (the model's `validation_metrics`, case-folded to the 36-character charset). A memory learned
    per word under the frozen decoder (`memory_table_probe`) is read back after pre-training, never before,
    and sooner than a random decoder trained with it learns to: the frozen-decoder fine-tune has a reachable
    target, and the text-only pre-training transfers to a memory learned with the decoder's loss."""
    import lightning as L
    from torch.utils.data import DataLoader

    from vlzoo.core.train import ZooModule

    words = ["open", "taxi", "exit", "hotel", "bank", "park", "no5", "24h"]
    torch.manual_seed(0)
    overrides = {"stage": "pretrain", "clip_pretrained": str(tiny_clip), "decoder": {"perm_num": 2}}
    module = ZooModule("dptr-parseq-tiny", model_overrides=overrides, export_weights=False)
    model = module.model  # two permutations: a third of the default's compute
    tok = model.config.tokenizer()
    model.eval()
    assert sum(p == w for p, w in zip(model.recognize(labels=words), words)) == 0
    # a learnable memory per word under the frozen random decoder: nothing to reach, nothing read; with the
    # random decoder trained too, 10 steps read at most 2 of the 8 words
    from vlzoo.ocr.demo_recognition import memory_table_probe

    assert [accuracy for _, accuracy in memory_table_probe(model, words, steps=50, eval_every=10)] == [0] * 6
    trained = memory_table_probe(model, words, steps=10, eval_every=10, train_decoder=True)
    assert dict(trained)[10] <= 25, trained
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(150):
        batch = [words[i] for i in torch.randint(len(words), (16,)).tolist()]
        opt.zero_grad()
        model({"text": tok(batch), "captions": batch, "image": torch.zeros(0)})["loss"].backward()
        opt.step()
    model.eval()
    read = model.recognize(labels=words)
    right = sum(p == w for p, w in zip(read, words))
    assert right >= 7, read
    # it reads the memory, not a language prior: given its neighbour's memory it reads the neighbour's word
    from vlzoo.ocr.demo_recognition import memory_swap_check

    swapped = memory_swap_check(model, words)
    assert swapped["neighbour"] >= 75 and swapped["own"] <= 25, swapped
    # the frozen pre-trained decoder is reachable, and sooner than a random one learns: a memory learned per
    # word (no image, no CLIP) is read back after 10 steps, and still after 50
    curve = dict(memory_table_probe(model, words, steps=50, eval_every=10))
    assert curve[10] >= 87.5 and curve[50] >= 87.5, curve

    # validation in batches of 3, 3, 2, labels upper-cased: the evaluation charset folds the case
    upper = [w.upper() for w in words]
    batches = [{"image": torch.zeros(len(b), 1), "captions": b} for b in (upper[:3], upper[3:6], upper[6:])]
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    (results,) = trainer.validate(module, DataLoader(batches, batch_size=None), verbose=False)
    assert results["val/accuracy"] == pytest.approx(100 * right / 8, abs=1e-4)
    assert 100 * right / 8 <= results["val/one_minus_ned"] <= 100


def test_pretrained_decoder_loads_only_the_decoder_and_refuses_other_weights(tiny_clip: Path, tmp_path: Path):
    from vlzoo.core import WeightsError

    pre = _pretrain(tiny_clip)
    path = save(pre, tmp_path / "pre.safetensors")
    torch.manual_seed(5)
    fine = create_model("dptr-parseq-tiny", stage="finetune", pretrained_decoder=str(path))
    assert all(
        torch.equal(a, b)
        for a, b in zip(pre.decoder.state_dict().values(), fine.decoder.state_dict().values())
    )
    assert not torch.equal(pre.fmu.queries, fine.fmu.queries)  # FMU and ViT start fresh
    clip = save(create_model("clip-vit-tiny"), tmp_path / "clip.safetensors")
    with pytest.raises(WeightsError, match=r"no 'decoder\.' weights"):
        create_model("dptr-parseq-tiny", pretrained_decoder=str(clip))


def test_conv_stem_downsamples_to_the_patch_grid_and_keeps_everything_after():
    """`stem="conv"`: stride-2 conv stages (one per halving; a 4×8 patch halves the width once more) feed the
    same ViT blocks on the same token grid; the patch stem is ViT's linear embedding; bad settings refused."""
    torch.manual_seed(0)
    patch = create_model("dptr-parseq-tiny", stage="finetune")
    conv = create_model("dptr-parseq-tiny", stage="finetune", stem="conv", stem_width=8)
    assert type(patch.encoder.patch_embed).__name__ == "PatchEmbed"
    stages = list(conv.encoder.patch_embed.backbone)
    assert [layer.conv.stride for layer in stages] == [(2, 2)] * 3  # 8×8 patches: three halvings
    assert [layer.conv.out_channels for layer in stages] == [8, 16, 32]
    assert conv.encoder.pos_embed.shape == patch.encoder.pos_embed.shape == (1, 4 * 16, 64)
    assert len(conv.encoder.blocks) == len(patch.encoder.blocks) == 2
    images = torch.randn(2, 3, 32, 128)
    assert conv.visual_memory(images).shape == (2, 17, 64)
    # each token sees its own 8×8 cell (and the 3×3 convs' margin), not the whole image: changing the last
    # column of cells leaves the first column's stem features as they were
    conv.eval()
    with torch.no_grad():
        before = conv.encoder.patch_embed(images)
        changed = images.clone()
        changed[..., -8:] = 5.0
        after = conv.encoder.patch_embed(changed)
    first_column = torch.arange(0, 64, 16)
    assert torch.allclose(before[:, first_column], after[:, first_column])
    assert not torch.allclose(before[:, first_column + 15], after[:, first_column + 15])
    wide = create_model("dptr-parseq-tiny", stage="finetune", stem="conv", patch_size=(4, 8))
    assert [layer.conv.stride for layer in wide.encoder.patch_embed.backbone] == [(2, 2), (2, 2), (1, 2)]
    assert wide.encoder.pos_embed.shape == (1, 8 * 16, 64)
    with pytest.raises(ConfigError, match="powers of 2"):
        create_model("dptr-parseq-tiny", stem="conv", patch_size=(6, 8))
    with pytest.raises(ConfigError, match="stem must be one of"):
        create_model("dptr-parseq-tiny", stem="resnet")


@pytest.mark.parametrize("std", [0.02, 1.0])
def test_fmu_query_scale_decides_whether_its_attention_starts_uniform(std: float):
    """At PARSeq's 0.02 every FMU query attends almost uniformly (its memory starts as mean-pooled features,
    the same at every position); at std 1 the queries pick different positions from the first step."""
    from vlzoo.ocr.dptr import FeatureMergeUnit

    torch.manual_seed(0)
    fmu = FeatureMergeUnit(64, 64, 17, 4, 4.0, 0.0, query_std=std).eval()
    assert fmu.queries.std().item() == pytest.approx(std, rel=0.15)
    features = torch.nn.functional.layer_norm(torch.randn(2, 64, 64), (64,))  # ViT tokens end with a norm
    query = fmu.queries.expand(2, -1, -1)
    weights = fmu.cross_attn(query, features, features, average_attn_weights=False)[1]  # [B, heads, Q, N]
    peak = weights.max(-1).values.mean().item() * 64  # 1.0: uniform over the 64 tokens
    assert peak < 1.1 if std == 0.02 else peak > 2.0
    assert create_model("dptr-parseq-tiny", stage="finetune").fmu.queries.std().item() < 0.03  # the default
    assert create_model("dptr-parseq-tiny", fmu_query_std=1.0).fmu.queries.std().item() > 0.8


def test_clip_encoder_is_the_clip_image_tower_on_the_squashed_crop(tiny_clip: Path):
    """`encoder="clip"`: the fine-tuning encoder starts as the text memory's CLIP image tower (its weights
    loaded), reads the crop squashed to the CLIP's 64×64 square and hands the FMU the projected class and
    patch tokens, the features an ORP bank holds; it trains with the rest; other encoders are refused."""
    from vlzoo.core import get_transforms
    from vlzoo.ocr.dptr import clip_image_tokens

    torch.manual_seed(3)  # a fresh draw: the tower must come from the file, not from the seed
    model = create_model("dptr-parseq-tiny", stage="finetune", encoder="clip", clip_pretrained=str(tiny_clip))
    clip = create_model("clip-vit-tiny", pretrained=tiny_clip).eval()
    assert all(
        torch.equal(a, b)
        for a, b in zip(clip.visual.state_dict().values(), model.encoder.visual.state_dict().values())
    )
    model.eval()
    crop = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 128, 3), dtype=np.uint8))
    images = model.config.transform(train=False)(crop)[None]  # the crop as DPTR reads it, 32×128
    square = get_transforms(clip, train=False)(crop.resize((64, 64), Image.BILINEAR))[None]
    with torch.no_grad():
        tokens = model.encoder.forward_features(images)
        expected = clip_image_tokens(clip, square)
    assert tokens.shape == expected.shape == (1, 1 + 64, 64)
    # PIL's bilinear and torch's antialiased bilinear differ by a few grey levels
    assert torch.nn.functional.cosine_similarity(tokens, expected, dim=-1).min() > 0.98
    assert model.visual_memory(images).shape == (1, 17, 64)
    model.train()
    model({"image": images.expand(2, -1, -1, -1), "text": ["ab", "cd"]})["loss"].backward()
    assert model.encoder.visual.trunk.patch_embed.proj.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="encoder must be one of"):
        create_model("dptr-parseq-tiny", encoder="resnet")


def test_word_clip_tiny_is_clip_vit_tiny_with_a_conv_stem_on_the_same_token_grid(tmp_path: Path):
    """`word-clip-tiny`: clip-vit-tiny's towers with the conv stem (stride-2 stages, 32 channels doubling) in
    place of the linear 8×8 patch embedding; the same 64 tokens and 64-d joint space, so DPTR reads its text
    memory and uses its image tower as the encoder (weights from its own file)."""
    torch.manual_seed(0)
    clip = create_model("word-clip-tiny")
    plain = create_model("clip-vit-tiny")
    stages = list(clip.visual.trunk.patch_embed.backbone)
    assert [layer.conv.stride for layer in stages] == [(2, 2)] * 3
    assert [layer.conv.out_channels for layer in stages] == [32, 64, 128]
    assert type(plain.visual.trunk.patch_embed).__name__ == "PatchEmbed"
    assert clip.visual.trunk.pos_embed.shape == plain.visual.trunk.pos_embed.shape
    path = save(clip, tmp_path / "word-clip.safetensors")
    model = create_model(
        "dptr-parseq-tiny",
        stage="finetune",
        encoder="clip",
        clip_model="word-clip-tiny",
        clip_pretrained=str(path),
    ).eval()
    assert torch.equal(
        model.encoder.visual.trunk.patch_embed.proj.weight, clip.visual.trunk.patch_embed.proj.weight
    )
    with torch.no_grad():
        assert model.encoder.forward_features(torch.zeros(1, 3, 32, 128)).shape == (1, 1 + 64, 64)
    pre = create_model(
        "dptr-parseq-tiny", stage="pretrain", clip_model="word-clip-tiny", clip_pretrained=str(path)
    )
    assert pre.pseudo_visual_memory(["open"]).shape == (1, 1 + 32, 64)


@pytest.mark.slow
def test_text_only_pretraining_beats_scratch_through_images(tmp_path: Path):
    """DPTR's transfer through images at test scale: a word-clip-tiny trained on its own renders of 8 words
    (stage 1), the decoder pre-trained on the text of a 40-word lexicon alone (stage 3), then two fine-tunes
    on 160 crops of the 8 words with the same CLIP-started encoder, FMU, batches and learning rate. After 60
    steps the pre-trained decoder reads at least 40% of the test crops of those words, the decoder from
    scratch at most 25% and less than half as many (seeds 1 / 2 of a scratch run: 45 / 50% against 15 / 10%;
    `benchmarks/ocr_dptr_transfer.py --encoder clip --clip-model word-clip-tiny` at the benchmark's scale)."""
    from vlzoo.ocr.demo_recognition import RECOGNITION_DEMO, arm_overrides, finetune_arm, pretrain_stages

    settings = {
        **RECOGNITION_DEMO,
        **{"lexicon": 40, "seen_words": 8, "text": "lexicon", "n_train": 160, "n_test": 40, "batch": 32},
        **{"clip_model": "word-clip-tiny", "clip_crops": 400, "clip_steps": 150, "pretrain_steps": 200},
        **{"encoder": "clip", "steps": 60, "eval_every": 60, "seed": 1},
    }
    stages = pretrain_stages(tmp_path, settings, log=lambda line: None)
    assert stages["text_only"]["seen"] >= 75  # the decoder reads CLIP's memory of the seen words
    arms = arm_overrides(stages["pretrained"], stages["clip"], "clip")
    seen = {}
    for arm in ("pretrained", "scratch"):
        curve, _ = finetune_arm(arm, arms[arm], str(stages["words"]), settings, str(tmp_path), log=print)
        assert [step for step, _ in curve] == [0, 60]
        seen[arm] = curve[-1][1]["seen"]
    assert seen["pretrained"] >= 40 and seen["scratch"] <= 25, seen
    assert seen["pretrained"] >= 2 * seen["scratch"], seen
