"""Batched augmentation: random erasing (the default model's recipe)."""

from __future__ import annotations

import torch

from ferkit.augment import AugmentConfig, augment_batch


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
