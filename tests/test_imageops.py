"""ferkit.imageops against the OpenCV calls it replaced (where OpenCV is installed), and on its own."""

from __future__ import annotations

import numpy as np
import pytest

from ferkit import imageops
from ferkit.imageio import load_image


@pytest.fixture(scope="module")
def astronaut(astronaut_png) -> np.ndarray:
    return load_image(astronaut_png)


@pytest.fixture(scope="module")
def cv2():
    return pytest.importorskip("cv2", reason="the comparison needs OpenCV")


def test_gray_is_opencvs_to_the_bit(astronaut, cv2):
    assert np.array_equal(imageops.to_gray(astronaut), cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY))


@pytest.mark.parametrize("size", [(320, 320), (123, 77), (48, 48), (256, 256), (511, 300)])
def test_area_shrink_matches_inter_area(astronaut, cv2, size):
    ours = imageops.resize(astronaut, size, "area")
    theirs = cv2.resize(astronaut, size, interpolation=cv2.INTER_AREA)
    diff = np.abs(ours.astype(int) - theirs)
    assert ours.shape == theirs.shape and diff.max() <= 1 and diff.mean() < 0.2


@pytest.mark.parametrize("size", [(480, 480), (640, 600), (100, 77), (320, 213)])
def test_linear_resize_matches_inter_linear(astronaut, cv2, size):
    """Enlarging before detection (photos under 320 px): OpenCV's fixed-point result, nearly to the bit."""
    part = astronaut[:416, :300]
    ours = imageops.resize(part, size, "linear")
    theirs = cv2.resize(part, size, interpolation=cv2.INTER_LINEAR)
    diff = np.abs(ours.astype(int) - theirs)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.mark.parametrize("border", ["replicate", "reflect101", "constant"])
def test_warp_matches_warp_affine(astronaut, cv2, border):
    gray = imageops.to_gray(astronaut)
    flag = {"replicate": cv2.BORDER_REPLICATE, "reflect101": cv2.BORDER_REFLECT_101,
            "constant": cv2.BORDER_CONSTANT}[border]
    for matrix, size in ((cv2.getRotationMatrix2D((100.3, 120.7), 17, 0.3), (48, 48)),
                         (np.array([[5.0, 0.3, -900], [-0.2, 5, -700]]), (300, 200))):
        ours = imageops.warp_affine(gray, matrix, size, border)
        theirs = cv2.warpAffine(gray, matrix, size, flags=cv2.INTER_LINEAR, borderMode=flag)
        diff = np.abs(ours.astype(int) - theirs)
        assert diff.mean() < 0.05 and (diff > 1).mean() < 0.005, (border, diff.max())
    assert np.allclose(imageops.rotation_matrix((10.5, 3.0), 33, 0.7),
                       cv2.getRotationMatrix2D((10.5, 3.0), 33, 0.7), atol=1e-6)


def test_blur_jet_and_jpeg_match_opencv(cv2):
    rng = np.random.default_rng(0)
    face = imageops.resize(rng.integers(0, 256, (96, 96), dtype=np.uint8), (48, 48), "area")
    for sigma in (0.5, 1.0, 2.0):
        theirs = cv2.GaussianBlur(face, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        assert np.abs(imageops.gaussian_blur(face, sigma).astype(int) - theirs).max() <= 1
    levels = np.arange(256, dtype=np.uint8)[None]
    jet = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    assert np.abs(imageops.jet(levels).astype(int) - jet).max() <= 1
    for quality in (7, 25, 75):
        _, data = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])
        theirs = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(imageops.jpeg_round_trip(face, quality), theirs)


def test_without_opencv_the_basics_hold():
    """Exact cases that need no reference: whole-block averages, identity warps, writable output."""
    img = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    half = imageops.resize(img, (4, 4), "area")
    assert np.array_equal(half, img.reshape(4, 2, 4, 2).mean(axis=(1, 3)).round().astype(np.uint8))
    assert half.flags.writeable
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    assert np.array_equal(imageops.warp_affine(img, identity, (8, 8)), img)
    shifted = imageops.warp_affine(img, np.array([[1.0, 0, 2], [0, 1.0, 0]]), (8, 8))
    assert np.array_equal(shifted[:, 2:], img[:, :6]) and np.array_equal(shifted[:, 0], img[:, 0])
    assert np.array_equal(imageops.invert_affine(np.array([[2.0, 0, 4], [0, 2.0, 6]])),
                          np.array([[0.5, 0, -2], [0, 0.5, -3]]))
    assert imageops.jet(np.array([0, 255], np.uint8)).tolist() == [[0, 0, 128], [128, 0, 0]]
