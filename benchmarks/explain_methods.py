"""The figure behind ferkit's choice of explanation: class activation maps (CAM) of the last 3x3
maps, Grad-CAM on the 6x6 stage and occlusion sensitivity (ferkit.inference.explain), side by side
on the astronaut and on FER2013 PrivateTest faces of five classes. Writes docs/explain-methods.png.

    python benchmarks/explain_methods.py          (needs torch: the first two need the network)
    python benchmarks/explain_methods.py --smoke  (seconds: FER2013's first 200 PrivateTest rows)
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from repo_support import add_smoke_args, results_dir, save_figure  # noqa: E402

from ferkit.data.challenge_csv import load_challenge_csv  # noqa: E402
from ferkit.face import CLASSES  # noqa: E402
from ferkit.inference import Recognizer  # noqa: E402
from ferkit.inference.explain import occlusion_maps  # noqa: E402
from ferkit.models.io import load_model  # noqa: E402
from ferkit.models.preprocess import to_model_input  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
ASTRONAUT = SHARED / "data" / "photos" / "astronaut.png"
FER2013 = SHARED / "data" / "fer2013" / "fer2013.csv.gz"
SMOKE_ROWS = 200


def private_test_rows(csv_gz: Path, out: Path, n: int) -> Path:
    """The header and the first ``n`` PrivateTest rows of the challenge CSV, written to ``out``
    (--smoke: real faces without parsing all 35,887 rows)."""
    with gzip.open(csv_gz, "rb") as src, open(out, "wb") as dst:
        dst.write(src.readline())
        for line in src:
            if line.rstrip().endswith(b",PrivateTest"):
                dst.write(line)
                n -= 1
                if not n:
                    break
    return out


def faces_to_show(recognizer: Recognizer, csv_path: Path = FER2013) -> tuple[np.ndarray, list[str]]:
    """The astronaut's crop and the first two PrivateTest faces of five classes."""
    faces = [recognizer.find_faces(str(ASTRONAUT)).crops[0]]
    titles = ["astronaut"]
    data = load_challenge_csv(csv_path)
    test = np.flatnonzero(data.usage == 2)
    for cls in (3, 5, 0, 4, 6):  # happy, surprise, angry, sad, neutral
        for i in [i for i in test if data.labels[i] == cls][:2]:
            faces.append(data.images[i])
            titles.append(CLASSES[cls])
    return np.stack(faces).astype(np.uint8), titles


def cam_and_gradcam(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CAM on the last stage (3x3) and Grad-CAM on the stage before (6x6), for the top class."""
    model, _ = load_model("default")
    model.eval()
    x = to_model_input(torch.from_numpy(faces))
    saved = {}
    hook = model.stages[-2].register_forward_hook(lambda m, i, o: saved.__setitem__("maps", o))
    feats = model.forward_features(x)
    logits = model.head(feats.mean((2, 3)))
    top = logits.argmax(1)
    cam = torch.einsum("nchw,nc->nhw", feats, model.head.weight[top]).detach().numpy()
    maps = saved["maps"]
    maps.retain_grad()
    logits.gather(1, top[:, None]).sum().backward()
    weights = maps.grad.mean((2, 3), keepdim=True)
    gradcam = torch.relu((weights * maps).sum(1)).detach().numpy()
    hook.remove()
    return cam, gradcam, top.numpy()


def normalised(m: np.ndarray) -> np.ndarray:
    m = cv2.resize(m.astype(np.float32), (48, 48), interpolation=cv2.INTER_LINEAR)
    m = m - m.min()
    return m / (m.max() + 1e-8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_smoke_args(parser)
    args = parser.parse_args()
    for needed in (ASTRONAUT, FER2013):
        if not needed.is_file():
            raise SystemExit(f"{needed} not found: explain_methods needs the astronaut and FER2013's CSV "
                             "(FERKIT_SHARED)")
    out = results_dir(args) if args.smoke or args.results_dir else REPO / "docs"
    recognizer = Recognizer("default")
    with tempfile.TemporaryDirectory(prefix="ferkit-explain-") as tmp:
        csv_path = FER2013
        if args.smoke:
            csv_path = private_test_rows(FER2013, Path(tmp) / "private.csv", SMOKE_ROWS)
        faces, titles = faces_to_show(recognizer, csv_path)
    cam, gradcam, top = cam_and_gradcam(faces)
    occlusion = occlusion_maps(recognizer.classify, faces, top)
    rows = [("face", None), ("CAM, last 3x3 maps", cam), ("Grad-CAM, 6x6 stage", gradcam),
            ("occlusion (ferkit)", occlusion)]
    fig, axes = plt.subplots(len(rows), len(faces), figsize=(1.6 * len(faces), 1.75 * len(rows)))
    for j, face in enumerate(faces):
        for r, (name, maps) in enumerate(rows):
            ax = axes[r, j]
            ax.imshow(face, cmap="gray")
            if maps is not None:
                ax.imshow(normalised(maps[j]), cmap="jet", alpha=0.45)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title(f"{titles[j]}\n-> {CLASSES[top[j]]}", fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "explain-methods.png", dpi=64)
    print(out / "explain-methods.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
