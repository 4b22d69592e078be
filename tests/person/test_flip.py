"""FLIP: BLIP-style ITC with a learnable, clamped temperature and momentum distillation; ITM on an
image-grounded text encoder with hard negatives; the face-attribute linear-probe protocol and its command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vlzoo.core import create_model, get_tokenizer, get_transforms
from vlzoo.person.cli import main as person_main
from vlzoo.person.data import write_face_toyworld
from vlzoo.person.evaluation_faces import face_attribute_probe, majority_baseline
from vlzoo.person.flip import distilled_itc_loss, sample_negatives

CAPTIONS = [
    "a smiling man with black hair, wearing glasses",
    "a woman with blond hair, wearing a hat",
    "a man who is bald, with a beard",
    "a woman with grey hair, wearing earrings",
    "a smiling woman with brown hair, with bangs",
    "a man with brown hair, clean shaven",
    "a woman with black hair, with an open mouth",
    "a man with grey hair, with a mustache",
]


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_face_toyworld(
        tmp_path_factory.mktemp("faces"), n_train=24, n_val=0, n_test=12, seed=1
    ).parent


@pytest.fixture(scope="module")
def flip_batch():
    torch.manual_seed(0)
    net = create_model("flip-tiny")
    text = get_tokenizer(net)(CAPTIONS)
    return net, {"image": torch.randn(8, 3, 64, 64), "text": text}


def test_itc_is_blips_symmetric_infonce_at_the_learnable_temperature(flip_batch):
    net, batch = flip_batch
    net.eval()  # evaluation (and momentum_distill=False): the plain contrast, no momentum encoders
    with torch.no_grad():
        net.temp.fill_(5.0)  # out of BLIP's range: forward clamps it to 0.5
        out = net(batch)
    assert net.temp.item() == pytest.approx(0.5) and "temp" in net.no_weight_decay()
    logits = out["image_features"] @ out["text_features"].T / 0.5
    labels = torch.arange(8)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert out["itc_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    with torch.no_grad():
        net.temp.fill_(0.07)


def test_itm_pairs_every_positive_with_one_negative_text_and_one_negative_image(flip_batch):
    net, batch = flip_batch
    torch.manual_seed(0)
    with torch.no_grad():
        out = net(batch)
    images, texts, labels = out["itm_image_index"], out["itm_text_index"], out["itm_labels"]
    assert labels.tolist() == [1] * 8 + [0] * 16 and out["itm_logits"].shape == (24, 2)
    assert torch.equal(images[:8], texts[:8])  # the positives: each image with its own caption
    assert (images[8:] != texts[8:]).all()  # the negatives never pair a caption with its own image
    # every caption once with a negative image, every image once with a negative caption
    assert texts[8:16].tolist() == list(range(8)) and images[16:].tolist() == list(range(8))


def test_hard_negatives_follow_the_similarity_and_skip_excluded_columns():
    generator = torch.Generator().manual_seed(0)
    similarity = torch.tensor(
        [[9.0, 8.0, 0.0, 0.0], [8.0, 9.0, 0.0, 0.0], [0.0, 0.0, 9.0, 0.0], [0, 0, 0, 9.0]]
    )
    exclude = torch.zeros(4, 4, dtype=torch.bool)
    exclude[2, 3] = True
    draws = torch.stack([sample_negatives(similarity, exclude, generator=generator) for _ in range(200)])
    assert (draws != torch.arange(4)).all()  # never the positive
    assert (draws[:, 0] == 1).float().mean() > 0.95  # the hardest negative of row 0 is column 1
    assert not (draws[:, 2] == 3).any()  # an excluded column (a duplicate caption) is never drawn
    uniform = torch.stack(
        [sample_negatives(similarity, exclude, hard=False, generator=generator) for _ in range(300)]
    )
    assert 0.2 < (uniform[:, 0] == 1).float().mean() < 0.5  # not hard: 1 of 3 candidates


def test_the_matching_encoder_reads_the_image_and_the_text_encoder_does_not(flip_batch):
    net, batch = flip_batch
    net.eval()
    bert_vocab = net.text.config.vocab_size - 2  # BLIP adds [DEC] and [ENC]
    assert net.enc_token_id == bert_vocab + 1
    other = torch.randn_like(batch["image"])
    with torch.no_grad():
        itm, itm_other = net.itm_logits(batch["image"], batch["text"]), net.itm_logits(other, batch["text"])
        text = net.encode_text(batch["text"])
        scores = net.itm_scores(batch)
    assert not torch.allclose(itm, itm_other, atol=1e-4)  # cross-attention to the image tokens
    assert torch.allclose(scores, itm.softmax(-1)[:, 1], atol=1e-6) and text.shape == (8, 64)
    ids = batch["text"].input_ids
    with torch.no_grad():  # the [ENC] token replaces [CLS]: a caption starting otherwise scores the same
        swapped = ids.clone()
        swapped[:, 0] = net.enc_token_id
        assert torch.allclose(net.itm_logits(batch["image"], swapped), itm, atol=1e-5)


@pytest.mark.slow
def test_itc_and_itm_pretraining_learns_a_batch_of_faces(faces: Path):
    """70 steps on 8 face-caption pairs: the contrast fits them (the linear-probe gain after pretraining on
    face-toyworld is measured in benchmarks/person_flip_probe.py)."""
    from vlzoo.core.data import build_source

    torch.manual_seed(0)
    net = create_model("flip-tiny", momentum_distill=False).train()
    source = build_source(str(faces / "face-toyworld.parquet"), "facecaption", "train", "first", {})
    transform = get_transforms(net, train=False)
    samples = [source[i] for i in range(8)]
    batch = {
        "image": torch.stack([transform(s["image"]) for s in samples]),
        "text": get_tokenizer(net)([s["text"] for s in samples]),
    }
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    first = net(batch)
    for _ in range(70):
        out = net(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    assert first["itc_loss"].item() > 0.9 * math.log(8)
    assert out["itc_loss"].item() < 0.6 * math.log(8), out["itc_loss"]  # 70 steps: 2.08 → 0.60


def test_distilled_itc_is_the_soft_target_cross_entropy_of_blip():
    generator = torch.Generator().manual_seed(0)

    def unit(*shape):
        return F.normalize(torch.randn(*shape, generator=generator), dim=-1)

    image, text, image_m, text_m = unit(3, 8), unit(3, 8), unit(3, 8), unit(3, 8)
    image_all, text_all = torch.cat([image_m, unit(2, 8)]), torch.cat([text_m, unit(2, 8)])  # batch, queue
    temp, alpha = torch.tensor(0.1), 0.4
    loss = distilled_itc_loss(image, text, image_all, text_all, image_m, text_m, torch.arange(3), temp, alpha)
    expected = 0.0
    for i in range(3):  # row by row, as BLIP writes it: -sum(log_softmax(sim) * targets)
        for q, keys, q_m in ((image[i], text_all, image_m[i]), (text[i], image_all, text_m[i])):
            soft = [math.exp(float(q_m @ k) / 0.1) for k in keys]
            logits = [float(q @ k) / 0.1 for k in keys]
            log_z = math.log(sum(math.exp(v) for v in logits))
            for j in range(5):
                target = alpha * soft[j] / sum(soft) + (1 - alpha) * (j == i)
                expected -= target * (logits[j] - log_z) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    hard = distilled_itc_loss(image, text, image_all, text_all, image_m, text_m, torch.arange(3), temp, 0.0)
    by_rows = F.cross_entropy(image @ text_all.T / temp, torch.arange(3))
    by_rows = (by_rows + F.cross_entropy(text @ image_all.T / temp, torch.arange(3))) / 2
    assert hard.item() == pytest.approx(by_rows.item(), rel=1e-5)  # alpha 0: InfoNCE over batch + queue


def test_momentum_encoders_follow_the_online_ones_and_the_queue_takes_their_features():
    torch.manual_seed(0)
    net = create_model("flip-tiny", momentum=0.9, queue_size=12, alpha_warmup_steps=4)
    batch = {"image": torch.randn(8, 3, 64, 64), "text": get_tokenizer(net)(CAPTIONS)}
    online, momentum = net.vision_proj.weight, net.momentum_encoders["vision_proj"].weight
    assert torch.equal(online, momentum) and not momentum.requires_grad  # they start as copies
    with torch.no_grad():
        online.add_(1.0)
        before = momentum.clone()
        net.eval()(batch)  # evaluation leaves the momentum encoders and the queue alone
        assert torch.equal(momentum, before) and net.queue_ptr.item() == 0
        net.train()(batch)
    assert torch.allclose(momentum, 0.9 * before + 0.1 * online, atol=1e-6)
    # the momentum features of the batch go into the queue at the pointer, which wraps around (12 rows)
    with torch.no_grad():
        encoders = net.momentum_encoders
        cls = encoders["visual"].trunk.forward_features(batch["image"])[:, 0]
        image_m = F.normalize(encoders["vision_proj"](cls), dim=-1)
    assert torch.allclose(net.image_queue[:8], image_m, atol=1e-5) and net.queue_ptr.item() == 8
    with torch.no_grad():
        net(batch)
    assert net.queue_ptr.item() == 4  # rows 8..11 then 0..3
    alphas = []
    for step in (0, 2, 4, 9):  # the core's training hook reports the optimizer steps taken
        net.on_train_step_end(step, 10)
        alphas.append(net.alpha)
    assert alphas == pytest.approx([0.0, 0.2, 0.4, 0.4])  # alpha ramps up to 0.4 over 4 steps


def test_weights_without_momentum_encoders_load_and_start_them_as_copies():
    torch.manual_seed(0)
    plain = create_model("flip-tiny", momentum_distill=False)
    torch.manual_seed(1)
    net = create_model("flip-tiny")
    assert not torch.equal(net.momentum_encoders["text_proj"].weight, plain.text_proj.weight)
    from vlzoo.core.weights import load_checked

    load_checked(net, plain.state_dict())
    for name in ("visual", "vision_proj", "text", "text_proj"):
        for a, b in zip(
            net.momentum_encoders[name].parameters(), getattr(plain, name).parameters(), strict=True
        ):
            assert torch.equal(a, b)


def test_majority_baseline_and_probe_by_hand():
    train = torch.tensor([[1, 0], [1, 1], [1, 0], [0, 0]])
    test = torch.tensor([[1, 1], [0, 0]])
    assert majority_baseline(train, test).tolist() == [50.0, 50.0]  # answers (1, 0)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (200, 2), generator=generator)
    # attribute 0 is the sign of feature 0; attribute 1 is noise the features don't carry
    features = torch.randn(200, 4, generator=generator)
    features[:, 0] = (labels[:, 0] * 2 - 1) * (1 + features[:, 0].abs())
    metrics = face_attribute_probe(features[:150], labels[:150], features[150:], labels[150:], ["a", "b"])
    assert metrics["attributes"]["a"]["accuracy"] == 100.0
    assert metrics["attributes"]["b"]["accuracy"] < 75.0
    mean = (metrics["attributes"]["a"]["accuracy"] + metrics["attributes"]["b"]["accuracy"]) / 2
    assert metrics["mean_accuracy"] == pytest.approx(mean)


def test_eval_face_attributes_writes_per_attribute_accuracy(faces: Path, tmp_path: Path, capsys):
    attributes = "Smiling,Eyeglasses,Wearing_Hat,Male"
    argv = ["eval", "face-attributes", "--model", "flip-tiny", "--data", str(faces), "--out", str(tmp_path)]
    code = person_main([*argv, "--attributes", attributes])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["attributes"]) == ["Smiling", "Eyeglasses", "Wearing_Hat", "Male"]
    assert metrics["train_images"] == 24 and metrics["test_images"] == 12
    for row in metrics["attributes"].values():
        assert 0 <= row["accuracy"] <= 100 and 0 <= row["majority_baseline"] <= 100
    assert "| Smiling |" in (tmp_path / "face_attributes.md").read_text()
    assert "Wearing_Hat" in capsys.readouterr().out
