"""Batched data augmentation on tensors: one affine warp for the whole batch, no per-image Python.

Random shifts, small rotations and zoom (one ``affine_grid`` + ``grid_sample``), horizontal
flips folded into the same matrix, and optional random erasing. Randomness comes from an
explicit generator so a run (and a resumed run) sees exactly the same augmented batches.

The photo degradations (``downscale``, ``blur``, ``light``, ``jpeg``, ``noise``) model what separates
users' photos from FER2013's crops: faces found small and upscaled, out of focus, under other
lighting, saved as JPEG and taken on noisy sensors. Each is the probability of applying it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ferkit.face import MEAN, STD
from ferkit.imageops import jpeg_round_trip as _jpeg
from ferkit.train.keys import key


@dataclass
class AugmentConfig:
    rotation: float = key(10.0, "degrees, uniform in [-rotation, rotation]")
    shift: float = key(0.1, "fraction of the image size")
    zoom: float = key(0.1, "scale uniform in [1 - zoom, 1 + zoom]")
    hflip: bool = key(True, "mirror half of the faces")
    erase: float = key(0.0, "probability of erasing one random rectangle")
    cutmix: float = key(0.0, "probability of pasting a box from another face of the batch (CutMix)")
    downscale: float = key(0.0, "probability of shrinking to 12-32 px and scaling back up")
    blur: float = key(0.0, "probability of a Gaussian blur, sigma 0.5-1.5 px")
    light: float = key(0.0, "probability of a gamma (0.55-1.8), contrast (0.5-1.3) and brightness change")
    jpeg: float = key(0.0, "probability of a JPEG round trip at quality 15-75")
    noise: float = key(0.0, "probability of Gaussian noise, sigma 1-8% of the range")

    def degrades(self) -> bool:
        return any((self.downscale, self.blur, self.light, self.jpeg, self.noise))


DOWNSCALE_SIDES = (12, 16, 20, 24, 32)
BLUR_TAPS = 7


def sample_affine(n: int, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) affine matrices (in normalised coordinates) for ``F.affine_grid``."""
    u = torch.rand(n, 5, generator=gen) * 2 - 1  # uniform in [-1, 1]
    angle = u[:, 0] * math.radians(cfg.rotation)
    scale = 1.0 + u[:, 1] * cfg.zoom
    tx, ty = u[:, 2] * cfg.shift * 2, u[:, 3] * cfg.shift * 2  # normalised coords span 2
    flip = torch.where(u[:, 4] < 0, -1.0, 1.0) if cfg.hflip else torch.ones(n)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    )
    return theta


def sample_erase(n: int, gen: torch.Generator, p: float, size: int = 48) -> torch.Tensor:
    """(n, 1, size, size) keep-mask with one random rectangle zeroed in a fraction p of images."""
    r = torch.rand(n, 5, generator=gen)
    h = (size * (0.1 + 0.3 * r[:, 0])).long()
    w = (size * (0.1 + 0.3 * r[:, 1])).long()
    y0 = (r[:, 2] * (size - h)).long()
    x0 = (r[:, 3] * (size - w)).long()
    ys = torch.arange(size)[None, :, None]
    xs = torch.arange(size)[None, None, :]
    rows_in = (ys >= y0[:, None, None]) & (ys < (y0 + h)[:, None, None])  # (n, size, 1)
    cols_in = (xs >= x0[:, None, None]) & (xs < (x0 + w)[:, None, None])  # (n, 1, size)
    inside = rows_in & cols_in & (r[:, 4] < p)[:, None, None]
    return (~inside).unsqueeze(1)


def sample_cutmix(
    n: int, gen: torch.Generator, p: float, size: int = 48
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix boxes (Yun et al. 2019) for a fraction p of n images.

    Returns the (n, 1, size, size) mask of the pasted box and, per image, the fraction of it that
    stays its own (1 where nothing is pasted). Box areas are uniform, the box centre anywhere,
    clipped at the border, and the label weight follows the clipped area.
    """
    r = torch.rand(n, 4, generator=gen)
    side = (r[:, 0].sqrt() * size).long()  # area (side/size)^2 uniform in [0, 1]
    cy, cx = (r[:, 1] * size).long(), (r[:, 2] * size).long()
    y0, y1 = (cy - side // 2).clamp(0, size), (cy + (side + 1) // 2).clamp(0, size)
    x0, x1 = (cx - side // 2).clamp(0, size), (cx + (side + 1) // 2).clamp(0, size)
    coords = torch.arange(size)
    rows_in = (coords[None, :, None] >= y0[:, None, None]) & (coords[None, :, None] < y1[:, None, None])
    cols_in = (coords[None, None, :] >= x0[:, None, None]) & (coords[None, None, :] < x1[:, None, None])
    pasted = rows_in & cols_in & (r[:, 3] < p)[:, None, None]
    own = 1.0 - pasted.flatten(1).float().mean(1)
    return pasted.unsqueeze(1), own


def cutmix_batch(
    x: torch.Tensor, gen: torch.Generator, p: float, *, rows: slice | None = None,
    n_total: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste into each face a box of its neighbour in the batch (partner i-1, wrapping around).

    Returns the mixed batch, the partner indices (for the partner's label) and the weight of each
    image's own label. Under DDP the boxes are drawn for the global batch like
    :func:`augment_batch`, but partners are taken within each rank's rows: each rank's first face
    pairs with that rank's last instead of the previous rank's, so only those pairs differ from a
    single process.
    """
    n = n_total or x.shape[0]
    pasted, own = sample_cutmix(n, gen, p, x.shape[-1])
    rows = rows or slice(None)
    pasted, own = pasted[rows].to(x.device), own[rows].to(x.device)
    partner = torch.arange(x.shape[0], device=x.device).roll(1)
    return torch.where(pasted, x[partner], x), partner, own


def augment_batch(
    x: torch.Tensor,
    cfg: AugmentConfig,
    gen: torch.Generator,
    *,
    rows: slice | None = None,
    n_total: int | None = None,
    erase_value: float = 0.0,
) -> torch.Tensor:
    """Augment a normalised float batch (B, 1, H, W); draws all randomness from ``gen``.

    Under DDP each rank holds ``rows`` of a global batch of ``n_total`` images: every rank draws
    the parameters of the whole global batch and keeps its own rows, so the augmented data is
    the same as a single process would see (CutMix, :func:`cutmix_batch`, differs slightly).
    """
    n = n_total or x.shape[0]
    rows = rows or slice(None)
    theta = sample_affine(n, cfg, gen)[rows].to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.degrades():
        x = degrade(x, cfg, gen, rows, n)
    if cfg.erase > 0:
        keep = sample_erase(n, gen, cfg.erase, x.shape[-1])[rows].to(x.device)
        x = torch.where(keep, x, torch.full_like(x, erase_value))
    return x


def degrade(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator, rows: slice, n: int) -> torch.Tensor:
    """Photo degradations of a normalised batch, drawn for the global batch of ``n`` like the rest."""
    u = torch.rand(n, 12, generator=gen)[rows].to(x.device)
    noise = torch.randn(n, *x.shape[1:], generator=gen)[rows].to(x.device) if cfg.noise else None

    def chosen(column: int, p: float) -> torch.Tensor:
        return (u[:, column] < p).view(-1, 1, 1, 1)

    img = (x * STD + MEAN).clamp(0, 1)  # pixel range [0, 1]
    if cfg.downscale:
        side = torch.tensor(DOWNSCALE_SIDES, device=x.device)[(u[:, 1] * len(DOWNSCALE_SIDES)).long()]
        for s in DOWNSCALE_SIDES:
            hit = (u[:, 0] < cfg.downscale) & (side == s)
            if hit.any():
                small = F.interpolate(img[hit], size=(s, s), mode="area")
                img[hit] = F.interpolate(small, size=img.shape[-2:], mode="bilinear", align_corners=False)
    if cfg.blur:
        img = torch.where(chosen(2, cfg.blur), gaussian_blur(img, 0.5 + u[:, 3]), img)
    if cfg.light:
        gamma = torch.exp((u[:, 5] * 2 - 1) * math.log(1.8)).clamp(0.55, 1.8).view(-1, 1, 1, 1)
        lit = img.clamp_min(1e-4) ** gamma
        mean = lit.mean((1, 2, 3), keepdim=True)
        contrast = (0.9 + 0.4 * (u[:, 6] * 2 - 1)).view(-1, 1, 1, 1)
        brightness = 0.15 * (u[:, 7] * 2 - 1).view(-1, 1, 1, 1)
        lit = ((lit - mean) * contrast + mean + brightness).clamp(0, 1)
        img = torch.where(chosen(4, cfg.light), lit, img)
    if cfg.jpeg:
        img = jpeg_round_trip(img, u[:, 8] < cfg.jpeg, (15 + 60 * u[:, 9]).round())
    if noise is not None:
        sigma = (0.01 + 0.07 * u[:, 11]).view(-1, 1, 1, 1)
        img = torch.where(chosen(10, cfg.noise), (img + sigma * noise).clamp(0, 1), img)
    return (img - MEAN) / STD


def gaussian_blur(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of (B, 1, H, W) blurred with its own sigma (separable, reflected edges)."""
    half = BLUR_TAPS // 2
    taps = torch.arange(-half, half + 1, device=img.device, dtype=img.dtype)
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma.to(img.dtype)[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (B, taps)
    b = img.shape[0]
    flat = F.pad(img.transpose(0, 1), (half, half, half, half), mode="reflect")  # (1, B, H+, W+)
    flat = F.conv2d(flat, kernel.view(b, 1, 1, -1), groups=b)
    flat = F.conv2d(flat, kernel.view(b, 1, -1, 1), groups=b)
    return flat.transpose(0, 1)


def jpeg_round_trip(img: torch.Tensor, hit: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """The chosen images of a [0, 1] batch saved as JPEG at their quality and decoded again."""
    if not hit.any():
        return img
    pixels = (img[:, 0] * 255).round().to(torch.uint8).cpu().numpy()
    out = img.clone()
    for i in np.flatnonzero(hit.cpu().numpy()):
        decoded = _jpeg(pixels[i], int(quality[i]))
        out[i, 0] = torch.from_numpy(decoded).to(img.device, img.dtype) / 255
    return out


def hflip(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=[-1])


# The photo degradations that the FER+ recipes train on (configs/default-ferplus.toml): how often
# a face is shrunk and scaled back, blurred, relit, JPEG-compressed and noised. The photo
# calibration (``ferkit calibrate``) is fitted on PublicTest faces degraded so, standing in for
# faces cropped from photos.
PHOTO_DEGRADATIONS = {"downscale": 0.25, "blur": 0.2, "light": 0.4, "jpeg": 0.25, "noise": 0.2}


def photo_degraded(faces: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 48, 48) uint8 faces through :data:`PHOTO_DEGRADATIONS` (no geometry), drawn from
    ``seed``: the same faces for every model."""
    cfg = AugmentConfig(rotation=0.0, shift=0.0, zoom=0.0, hflip=False, **PHOTO_DEGRADATIONS)
    x = (torch.from_numpy(np.asarray(faces, np.uint8)).float()[:, None] / 255 - MEAN) / STD
    out = degrade(x, cfg, torch.Generator().manual_seed(seed), slice(0, len(x)), len(x))
    return ((out * STD + MEAN).clamp(0, 1)[:, 0] * 255).round().to(torch.uint8).numpy()
