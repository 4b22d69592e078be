"""vlzoo.core.weights.io: safe loading (safetensors, weights_only torch.load), unwrapping, atomic saving."""

from __future__ import annotations

import os
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from vlzoo.core.errors import WeightsError
from vlzoo.core.weights.io import load_state_dict, read_metadata, save_state_dict


class PickledConfig:
    """A custom class: torch.load(weights_only=True) must refuse to rebuild it."""

    def __init__(self) -> None:
        self.lr = 0.1


class RunsShell:
    """A pickle payload that would run a command when unpickled without weights_only."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tensors():
    return {"w": torch.randn(3, 4), "b": torch.arange(4, dtype=torch.int64)}


def _assert_same(actual, expected):
    assert set(actual) == set(expected)
    for k, v in expected.items():
        assert torch.equal(actual[k], v), k


def test_plain_tensor_dict_pt_loads(tmp_path):
    sd = _tensors()
    torch.save(sd, tmp_path / "plain.pt")
    _assert_same(load_state_dict(tmp_path / "plain.pt"), sd)
    torch.save(sd, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    _assert_same(load_state_dict(tmp_path / "legacy.pth"), sd)


@pytest.mark.parametrize("payload", ["custom_class", "reduce_os_system"])
def test_pickle_payload_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    obj = PickledConfig() if payload == "custom_class" else RunsShell(str(marker))
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": _tensors(), "hparams": obj}, path)
    with pytest.raises(WeightsError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert str(path) in message
    assert "non-tensor pickled objects" in message
    assert "will not be unpickled" in message
    assert not marker.exists()


def test_safetensors_roundtrip_with_tied_weights_and_metadata(tmp_path):
    emb = torch.randn(10, 4)
    sd = {
        "token_embedding.weight": emb,
        "lm_head.weight": emb,  # tied: same storage
        "proj": torch.randn(4, 6).t(),  # non-contiguous
        "qkv_q": emb[:5],  # a view into the tied buffer
    }
    path = save_state_dict(sd, tmp_path / "sub" / "model.safetensors", metadata={"vlzoo_model": "clip-b32"})
    assert path == tmp_path / "sub" / "model.safetensors"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]  # no temp left behind
    loaded = load_state_dict(path)
    _assert_same(loaded, {k: v.contiguous() for k, v in sd.items()})
    assert read_metadata(path) == {"format": "pt", "vlzoo_model": "clip-b32"}
    # The original tensors were not modified or detached in place.
    assert sd["lm_head.weight"] is emb


def test_save_is_atomic_when_it_fails(tmp_path):
    path = tmp_path / "model.safetensors"
    save_state_dict({"a": torch.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="not a tensor"):
        save_state_dict({"a": torch.zeros(2), "step": 3}, path)
    with pytest.raises(TypeError, match="metadata"):
        save_state_dict({"a": torch.zeros(2)}, path, metadata={"epoch": 3})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_unwrap_lightning_and_ddp(tmp_path):
    sd = _tensors()
    ckpt = {
        "epoch": 7,
        "global_step": 1234,
        "state_dict": {f"module.{k}": v for k, v in sd.items()} | {"module.num_batches": 3},
        "optimizer_states": [{"lr": 0.1}],
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    _assert_same(load_state_dict(tmp_path / "last.ckpt"), sd)


def test_unwrap_model_key_and_compile_prefix(tmp_path):
    sd = _tensors()
    torch.save({"model": {f"module._orig_mod.{k}": v for k, v in sd.items()}}, tmp_path / "m.bin")
    _assert_same(load_state_dict(tmp_path / "m.bin"), sd)


def test_prefix_kept_unless_every_key_has_it(tmp_path):
    sd = {"module.a": torch.ones(1), "b": torch.zeros(1)}
    torch.save(sd, tmp_path / "mixed.pt")
    assert set(load_state_dict(tmp_path / "mixed.pt")) == {"module.a", "b"}


def test_safetensors_detected_by_header_whatever_the_suffix(tmp_path):
    sd = _tensors()
    save_file(sd, tmp_path / "weights.bin", metadata={"k": "v"})
    _assert_same(load_state_dict(tmp_path / "weights.bin"), sd)
    assert read_metadata(tmp_path / "weights.bin") == {"k": "v"}
    torch.save(sd, tmp_path / "t.pt")
    assert read_metadata(tmp_path / "t.pt") == {}


def test_map_location(tmp_path):
    save_state_dict(_tensors(), tmp_path / "a.safetensors")
    torch.save(_tensors(), tmp_path / "a.pt")
    for name in ("a.safetensors", "a.pt"):
        sd = load_state_dict(tmp_path / name, map_location=torch.device("cpu"))
        assert all(t.device.type == "cpu" for t in sd.values())


@pytest.mark.parametrize("cut", [4, 40, -100])
def test_truncated_safetensors_is_a_weights_error(tmp_path, cut):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.randn(100)}, path)
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(WeightsError, match=r"model\.safetensors"):
        load_state_dict(path)


def test_bad_files_are_weights_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match="not a file"):
        load_state_dict(tmp_path)

    with zipfile.ZipFile(tmp_path / "notes.pt", "w") as z:
        z.writestr("readme.txt", "not a checkpoint")
    with pytest.raises(WeightsError, match=r"notes\.pt.*not a readable torch checkpoint"):
        load_state_dict(tmp_path / "notes.pt")

    (tmp_path / "garbage.pt").write_bytes(b"hello, I am a text file")
    with pytest.raises(WeightsError, match=r"garbage\.pt is neither"):
        load_state_dict(tmp_path / "garbage.pt")

    good = tmp_path / "good.pt"
    torch.save(_tensors(), good)
    (tmp_path / "half.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match=r"half\.pt"):
        load_state_dict(tmp_path / "half.pt")

    torch.save([torch.ones(1)], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="not a state dict"):
        load_state_dict(tmp_path / "list.pt")

    torch.save({"epoch": 3}, tmp_path / "empty.pt")
    with pytest.raises(WeightsError, match="no tensors"):
        load_state_dict(tmp_path / "empty.pt")
