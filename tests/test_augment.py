"""Batched augmentation: random erasing (the default model's recipe) and CutMix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ferkit.train.augment import AugmentConfig, augment_batch, cutmix_batch


def test_random_erasing_blanks_one_rectangle_per_image():
    cfg = AugmentConfig(rotation=0, shift=0, zoom=0, hflip=False, erase=1.0)
    x = torch.ones(32, 1, 48, 48)
    out = augment_batch(x, cfg, torch.Generator().manual_seed(0), erase_value=-5.0)
    erased = (out == -5.0).flatten(1).sum(1)
    # Sides of 10-40% of 48 pixels: at least 4x4, at most 19x19, and the rest untouched.
    assert out.shape == x.shape and bool((erased >= 16).all()) and bool((erased <= 19 * 19).all())
    assert bool(((out == 1.0) | (out == -5.0)).all())
    none = augment_batch(x, AugmentConfig(rotation=0, shift=0, zoom=0, hflip=False, erase=0.0),
                         torch.Generator().manual_seed(0), erase_value=-5.0)
    assert not bool((none == -5.0).any())


def test_cutmix_pastes_the_neighbours_box_and_weights_labels_by_area():
    # Image i is filled with the value i, so every pixel tells which face it came from.
    x = torch.arange(16.0).view(16, 1, 1, 1).expand(16, 1, 48, 48).contiguous()
    mixed, partner, own = cutmix_batch(x, torch.Generator().manual_seed(0), p=1.0)
    assert partner.tolist() == [15] + list(range(15))
    for i in range(16):
        from_partner = (mixed[i] == partner[i]).float().mean()
        assert bool(((mixed[i] == i) | (mixed[i] == partner[i])).all())
        assert own[i].item() == pytest.approx(1 - from_partner.item())
    assert 0.2 < own.mean().item() < 0.8  # box areas are spread over [0, 1]
    untouched, _, own = cutmix_batch(x, torch.Generator().manual_seed(0), p=0.0)
    assert untouched.equal(x) and bool((own == 1).all())


def test_cutmix_loss_splits_between_the_two_labels():
    from ferkit.train.loop import classification_loss

    logits = torch.randn(8, 7)
    y = torch.arange(8) % 7
    partner = torch.arange(8).roll(1)
    plain = F.cross_entropy(logits, y, label_smoothing=0.1)
    assert classification_loss(logits, y, 0.1, partner, torch.ones(8)).item() == pytest.approx(plain.item())
    theirs = F.cross_entropy(logits, y[partner], label_smoothing=0.1)
    half = classification_loss(logits, y, 0.1, partner, torch.full((8,), 0.5))
    assert half.item() == pytest.approx((plain.item() + theirs.item()) / 2, rel=1e-5)


DEGRADATIONS = ("downscale", "blur", "light", "jpeg", "noise")


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_each_photo_degradation_changes_faces_within_range_and_replays(name):
    from ferkit.face import MEAN, STD

    faces = torch.linspace(0, 1, 48).view(1, 1, 1, 48).expand(8, 1, 48, 48).clone()
    faces[:, :, 16:32, 16:32] = 0.9  # an edge to blur, a block to compress
    x = (faces - MEAN) / STD
    cfg = AugmentConfig(rotation=0, shift=0, zoom=0, hflip=False, **{name: 1.0})
    out = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    again = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    pixels = out * STD + MEAN
    assert torch.equal(out, again)  # the same generator state gives the same batch (exact resume)
    assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5
    assert bool(((out - x).abs().flatten(1).amax(1) > 0.02).all())  # every face changed
    off = augment_batch(x, AugmentConfig(rotation=0, shift=0, zoom=0, hflip=False, **{name: 0.0}),
                        torch.Generator().manual_seed(0))
    assert torch.allclose(off, x, atol=1e-5)


def test_degradations_under_ddp_rows_match_the_single_process_batch():
    cfg = AugmentConfig(**dict.fromkeys(DEGRADATIONS, 0.5))
    x = torch.randn(16, 1, 48, 48).clamp(-1.9, 1.9)
    whole = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    half = augment_batch(x[8:], cfg, torch.Generator().manual_seed(3), rows=slice(8, 16), n_total=16)
    assert torch.allclose(whole[8:], half, atol=1e-5)
