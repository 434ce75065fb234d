"""Batched augmentation: random erasing (the default model's recipe) and CutMix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ferkit.augment import AugmentConfig, augment_batch, cutmix_batch


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
    from ferkit.train import classification_loss

    logits = torch.randn(8, 7)
    y = torch.arange(8) % 7
    partner = torch.arange(8).roll(1)
    plain = F.cross_entropy(logits, y, label_smoothing=0.1)
    assert classification_loss(logits, y, 0.1, partner, torch.ones(8)).item() == pytest.approx(plain.item())
    theirs = F.cross_entropy(logits, y[partner], label_smoothing=0.1)
    half = classification_loss(logits, y, 0.1, partner, torch.full((8,), 0.5))
    assert half.item() == pytest.approx((plain.item() + theirs.item()) / 2, rel=1e-5)
