"""The settings that make the default demo cheaper per step without changing what it learns: a text context
as long as toyworld's longest caption, and AdamW's fused kernel (`ZooModule(fused=True)`)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

import vlzoo.core as vz
from vlzoo.core.data import write_toyworld
from vlzoo.core.data.toyworld import ToyWorld
from vlzoo.core.demo import TOYWORLD_DEMO
from vlzoo.core.train import ImageTextDataModule, ZooModule

# The longest a toyworld caption can be: the longest template, size, colour, shape and relation words.
LONGEST_CAPTION = "a picture of a little purple triangle to the right of a little purple triangle"


def _demo_tokenizer():
    return vz.get_tokenizer(TOYWORLD_DEMO.model, **TOYWORLD_DEMO.module["model_overrides"])


def test_the_demo_text_context_holds_the_longest_toyworld_caption_whole():
    tokenizer = _demo_tokenizer()
    # start token, 15 word tokens, end token: the context must not cut it
    assert len(tokenizer.encode(LONGEST_CAPTION)) == 15
    ids = tokenizer([LONGEST_CAPTION]).input_ids[0]
    assert ids.shape[0] >= 17
    assert tokenizer.decode(ids) == LONGEST_CAPTION
    assert int(ids[16]) == tokenizer.eot_token_id


def test_no_generated_caption_is_cut_by_the_demo_text_context():
    tokenizer = _demo_tokenizer()
    world = ToyWorld("train", 400, TOYWORLD_DEMO.generate["image_size"], seed=3)
    captions = [text for i in range(len(world)) for text in world.generate(i)[2]]
    captions += [text for i in range(len(world)) for text in world.negative_captions(i)]
    context = tokenizer.context_length
    lengths = torch.tensor([len(tokenizer.encode(text)) + 2 for text in captions])
    assert int(lengths.max()) <= context, max(captions, key=len)
    assert int(lengths.max()) >= 15  # the longest templates were drawn: the check above is not vacuous


@pytest.fixture(scope="module")
def toyworld_json(tmp_path_factory) -> Path:
    return write_toyworld(tmp_path_factory.mktemp("toyworld"), n_train=64, n_val=16, n_test=16, seed=2)


def _train_steps(toyworld_json: Path, root: Path, fused: bool) -> tuple[ZooModule, L.Trainer, dict]:
    L.seed_everything(0, verbose=False)
    module = ZooModule("clip-vit-tiny", lr=1e-3, weight_decay=0.1, fused=fused)
    start = {name: p.detach().clone() for name, p in module.model.named_parameters()}
    data = ImageTextDataModule(str(toyworld_json), batch_size=16, num_workers=0, seed=0)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=3,
        default_root_dir=root,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, data)
    return module, trainer, start


def test_fused_adamw_takes_the_same_steps_as_the_default_one(toyworld_json, tmp_path):
    fused, fused_trainer, start = _train_steps(toyworld_json, tmp_path / "fused", fused=True)
    plain, plain_trainer, plain_start = _train_steps(toyworld_json, tmp_path / "plain", fused=False)
    assert fused_trainer.optimizers[0].defaults["fused"] is True
    assert not plain_trainer.optimizers[0].defaults["fused"]
    trained = dict(fused.model.named_parameters())
    for name, weight in plain.model.named_parameters():
        torch.testing.assert_close(start[name], plain_start[name], atol=0, rtol=0, msg=name)  # same start
        torch.testing.assert_close(trained[name], weight, atol=1e-5, rtol=1e-4, msg=name)
    # three steps at lr 1e-3 move the weights: the equality above is between two trained models
    assert (trained["text.head.weight"] - start["text.head.weight"]).abs().max() > 1e-3
