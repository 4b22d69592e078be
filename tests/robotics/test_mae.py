"""The masked-autoencoder objective: patch order, the loss by hand, the masking, and that it learns."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from vlzoo.core.errors import ConfigError
from vlzoo.robotics.mae import ClipImages, MaskedAutoencoderModule, masked_patch_loss, patchify
from vlzoo.robotics.toyworld import write_robot_toyworld


def test_patchify_puts_each_patch_in_the_tokens_row_major_order():
    # a 2×2 grid of 2-px patches, each filled with its own index in channel 0 and 10× it in channel 1
    image = torch.zeros(1, 2, 4, 4)
    for k, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        image[0, 0, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = k
        image[0, 1, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = 10 * k
    patches = patchify(image, 2)
    assert patches.shape == (1, 4, 8)
    for k in range(4):  # pixel-major, channels last: (k, 10k) four times
        assert patches[0, k].tolist() == [k, 10 * k] * 4


def test_masked_patch_loss_by_hand():
    target = torch.tensor([[[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]]])
    pred = torch.tensor([[[1.0, 1.0], [5.0, 5.0], [0.0, 0.0]]])
    mask = torch.tensor([[1.0, 0.0, 1.0]])  # patch 1 is visible: its error of 25 must not count
    # raw pixels: patch 0 ((0 + 4) / 2 = 2), patch 2 ((4 + 4) / 2 = 4) → mean 3
    assert masked_patch_loss(pred, target, mask, norm_pix=False).item() == pytest.approx(3.0)
    # normalized: patch 0 → (±1)/sqrt(2 + 1e-6)·... = (-0.7071, 0.7071) against (1, 1): ((1.7071² + 0.2929²) / 2)
    # patch 2 (constant) → (0, 0) against (0, 0): 0 → mean 0.7500
    assert masked_patch_loss(pred, target, mask).item() == pytest.approx(
        (1.7071**2 + 0.2929**2) / 4, abs=1e-3
    )


def test_masking_drops_three_quarters_of_each_image_at_its_own_places():
    torch.manual_seed(0)
    module = MaskedAutoencoderModule("h2r-mae-tiny")
    latent, mask, restore = module.encode_visible(torch.randn(4, 3, 64, 64))
    assert latent.shape == (4, 1 + 16, 64)  # the class token and 16 of the 64 patches
    assert (mask.sum(1) == 48).all()
    assert len({tuple(m.nonzero().flatten().tolist()) for m in mask}) == 4  # drawn per image
    # with every patch shown, the masked encoder is the tower's own trunk on its tokens
    module.hparams.mask_ratio = 0.0  # past the constructor's check: keep all 64
    module.eval()
    images = torch.randn(2, 3, 64, 64)
    latent, mask, restore = module.encode_visible(images)
    assert mask.sum() == 0
    trunk = module.model.visual.trunk
    full = trunk.forward_features(images)
    shuffled_back = latent[:, 1:].gather(1, restore[..., None].expand(-1, -1, 64))
    assert torch.allclose(shuffled_back, full[:, 1:], atol=1e-5)
    with pytest.raises(ConfigError, match="mask_ratio"):
        MaskedAutoencoderModule("h2r-mae-tiny", mask_ratio=1.0)


@pytest.fixture(scope="session")
def frames_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mae-toyworld")
    write_robot_toyworld(root, n_train=8, n_val=0, n_test=0, frames=6, image_size=64, seed=5)
    return root / "captions.csv"


@pytest.mark.slow
def test_mae_pretraining_lowers_the_reconstruction_loss_of_fixed_masks(frames_root):
    """Fitted by Lightning on 48 toy frames, the masked patches' error (same images, same masks, measured
    before and after) falls well below the untrained model's."""
    frames = ClipImages(frames_root, "h2r-mae-tiny", train=False)
    assert len(frames) == 8 * 6
    images = torch.stack([frames[i]["image"] for i in range(len(frames))])
    torch.manual_seed(0)
    module = MaskedAutoencoderModule("h2r-mae-tiny", lr=2e-3)

    def loss_on_fixed_masks() -> float:
        module.eval()
        torch.manual_seed(123)
        with torch.no_grad():
            return module(images)[0].item()

    before = loss_on_fixed_masks()
    train = DataLoader(ClipImages(frames_root, "h2r-mae-tiny"), batch_size=16, shuffle=True)
    L.Trainer(max_epochs=30, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(module.train(), train)  # fmt: skip
    after = loss_on_fixed_masks()
    assert after < 0.6 * before, (before, after)
