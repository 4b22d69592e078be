"""What domain packages plug into: data kinds, generated datasets, per-model transforms, multi-view batches,
multi-part image suffixes, training and evaluation hooks, and CLI subcommands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import Dataset

import vlzoo.core as vz
from vlzoo.core.cli import Command, main
from vlzoo.core.data import (
    ImageTextCollator,
    decode_image,
    infer_data_kind,
    model_transform,
    register_data_kind,
    register_generated_dataset,
    register_image_decoder,
    write_toyworld,
)
from vlzoo.core.errors import ConfigError, DataError
from vlzoo.core.eval import encode_pair_batch
from vlzoo.core.train import ImageTextDataModule, ZooModule


class _Numbers(Dataset):
    def __init__(self, path: str, split: str, captions: str, options=None):
        self.path, self.split, self.captions, self.options = path, split, captions, dict(options or {})

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((3, 8, 8), float(i)), "text": f"number {i}", "id": i}


def test_a_registered_kind_is_picked_by_name_and_by_its_longest_suffix():
    register_data_kind(
        "test-numbers", lambda p, s, c, o: _Numbers(p, s, c, o), suffixes=(".num.gz",), options=("bands",)
    )
    register_data_kind("test-gz", lambda p, s, c, o: _Numbers(p, s, c), suffixes=(".gz",))
    assert infer_data_kind("/data/a.num.gz") == "test-numbers"
    assert infer_data_kind("/data/a.gz") == "test-gz"
    with pytest.raises(ConfigError, match="cannot tell the format"):
        infer_data_kind("/data/a.unknown")

    dm = ImageTextDataModule(
        "/data/x.bin",
        data_kind="test-numbers",
        val_data="/v.num.gz",
        num_workers=0,
        data_options={"bands": [4, 3, 2]},
    )
    dm.setup("fit")
    train, val = dm._datasets["train"], dm._datasets["val"]
    assert (train.path, train.captions) == ("/data/x.bin", "random")
    assert train.options["bands"] == [4, 3, 2] and train.options["train"] and not val.options["train"]
    assert (val.path, val.split, val.captions) == ("/v.num.gz", "val", "all")
    with pytest.raises(ConfigError, match="data_kind"):
        ImageTextDataModule("x", data_kind="no-such-kind")


def test_a_generated_dataset_is_written_once_and_read_with_its_kind(tmp_path):
    calls = []

    def write(out_dir, **kwargs):
        calls.append(kwargs)
        return write_toyworld(Path(out_dir), image_size=32, **kwargs)

    register_generated_dataset("test-generated", write, "toyworld.json", kind="karpathy")
    sizes = {"n_train": 8, "n_val": 4, "n_test": 4}
    dm = ImageTextDataModule("test-generated", data_dir=str(tmp_path), generate=sizes, num_workers=0)
    dm.prepare_data()
    dm.prepare_data()
    assert calls == [sizes]
    dm.setup("fit")
    assert len(dm._datasets["train"]) == 8 and len(dm._datasets["val"]) == 4  # val defaults to its split
    with pytest.raises(ConfigError, match="not both"):
        ImageTextDataModule("test-generated", generate=sizes, toyworld=sizes)


def test_decoders_match_multi_part_suffixes_longest_first(tmp_path):
    register_image_decoder(".twopart.bin", lambda data, name: ("long", name))
    register_image_decoder(".bin", lambda data, name: ("short", name))
    assert decode_image(b"", "scan.twopart.bin")[0] == "long"
    assert decode_image(b"", "scan.other.bin")[0] == "short"


@dataclass
class _ConfigWithOwnTransform:
    def transform(self, train: bool, albumentations=None):
        return lambda image: {"image": image * 2, "views": torch.stack([image, -image])}


def test_a_config_transform_replaces_the_tower_transform_and_dict_views_are_stacked():
    transform = model_transform(_ConfigWithOwnTransform(), train=True)
    collate = ImageTextCollator(transform, tokenizer=None, captions="first")
    samples = [{"image": torch.full((1, 2, 2), float(i)), "text": "t", "id": i} for i in range(3)]
    batch = collate(samples)
    assert batch["image"].shape == (3, 1, 2, 2) and batch["views"].shape == (3, 2, 1, 2, 2)
    assert torch.equal(batch["image"][2], torch.full((1, 2, 2), 4.0))
    assert torch.equal(batch["views"][1, 1], torch.full((1, 2, 2), -1.0))

    bad = ImageTextCollator(lambda image: {"views": image}, tokenizer=None)
    with pytest.raises(DataError, match="'image'"):
        bad(samples)


def test_a_model_retrieval_features_hook_is_used_for_evaluation():
    class VolumeModel(torch.nn.Module):
        def retrieval_features(self, batch):
            return batch["image"].mean(dim=1), batch["text"]

    images, texts = encode_pair_batch(
        VolumeModel(), {"image": torch.ones(2, 5, 3), "text": torch.zeros(2, 3)}
    )
    assert images.shape == (2, 3) and torch.equal(texts, torch.zeros(2, 3))
    clip = vz.create_model("clip-vit-tiny").eval()
    batch = {"image": torch.randn(2, 3, 64, 64), "text": vz.get_tokenizer("clip-vit-tiny")(["a", "b"])}
    images, texts = encode_pair_batch(clip, batch)
    assert torch.allclose(images, clip.encode_image(batch["image"]))


def test_on_train_step_end_runs_once_per_optimizer_step(tmp_path):
    json_path = write_toyworld(tmp_path / "toy", n_train=64, n_val=8, n_test=8, image_size=32, seed=0)
    module = ZooModule("clip-vit-tiny", model_overrides={"vision": {"image_size": 32}})
    seen = []
    module.model.on_train_step_end = lambda step, total: seen.append((step, total))
    dm = ImageTextDataModule(
        str(json_path), batch_size=16, num_workers=0, model_overrides={"vision": {"image_size": 32}}
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=3,
        accumulate_grad_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, dm)
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_domain_commands_add_to_and_replace_the_core_ones(capsys):
    def configure_hello(p):
        p.add_argument("--times", type=int, default=1)
        p.set_defaults(func=lambda args: print("hello " * args.times) or 7)

    def configure_eval(p):
        p.set_defaults(func=lambda args: 3)

    commands = {
        "hello": Command("say hello", configure_hello),
        "eval": Command("domain eval", configure_eval),
    }
    assert main(["hello", "--times", "2"], prog="vlzoo-test", commands=commands) == 7
    assert capsys.readouterr().out.strip() == "hello hello"
    assert main(["eval"], prog="vlzoo-test", commands=commands) == 3  # the core's eval needs --model
    assert main(["list", "clip-vit-tiny"], prog="vlzoo-test", commands=commands) == 0
