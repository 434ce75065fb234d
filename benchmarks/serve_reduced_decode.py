"""Would a reduced JPEG decode change the service's answers? ExpW-dev photos through two engines.

``Engine(reduced_decode=True)`` decodes a JPEG of 640 px or more at a DCT scale near YuNet's 320 px
and cuts faces from that copy when it has a pixel for each crop pixel (``ferkit/serve/engine.py``). This
sends the same photos through an engine with it (``reduced_decode=True``) and one without (every
image decoded whole, the default) and compares, per photo:

- the detections of the two (one-to-one at IoU >= 0.5, in the upload's pixels) and, for each
  pair, whether the labels agree;
- each engine end to end against ExpW's labels, as ``ferkit eval`` scores photos: a labelled face
  is found when a detection overlaps it with IoU >= 0.3, and a missed face counts as wrong.

ExpW-dev's photos are at most 512 px, under the 640 where the reduced decode starts, so each is
scaled up (Lanczos, JPEG quality 90) to a longest side of 640, 800, 1,024, 1,280 or 1,600 px in
turn: DCT scales 1/2 and 1/4. Scaled-up photos hold no detail beyond the original's, so this
measures the decode and the crop, not what a sharper phone photo would add. ExpW-dev is for
measuring only; nothing here is tuned on it.

    python benchmarks/serve_reduced_decode.py            # all 1,806 photos, ~3 minutes on 2 cores
    python benchmarks/serve_reduced_decode.py --smoke    # 20 photos
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import time
from pathlib import Path

import repo_support  # noqa: F401  (tests/support on the path)
from PIL import Image
from repo_support import add_smoke_args, results_dir

from ferkit.data.labelled_photos import load_labelled_photos
from ferkit.evaluate.photos import match_boxes
from ferkit.face import CLASSES, Box
from ferkit.serve.engine import Engine, Upload

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
SIDES = (640, 800, 1024, 1280, 1600)
SAME_FACE_IOU = 0.5


def scaled_jpeg(path: Path, side: int) -> tuple[bytes, float]:
    """The photo with its longest side ``side`` px as a JPEG, and the factor it was scaled by."""
    img = Image.open(path).convert("RGB")
    factor = side / max(img.size)
    img = img.resize((round(img.width * factor), round(img.height * factor)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue(), factor


def faces_of(result: dict) -> list[tuple[Box, str]]:
    """(box, label) of each face in a /v1/predict JSON answer."""
    return [(Box(**f["box"]), f["label"]) for f in result["faces"]]


async def measure(photos: list, engines: dict[str, Engine]) -> dict:
    """Per engine: found and correct labelled faces, ms per photo; across them: label agreement."""
    found = {name: 0 for name in engines}
    correct = {name: 0 for name in engines}
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    pairs = same = only_one = labelled = 0
    disagreements: list[str] = []
    for i, photo in enumerate(photos):
        side = SIDES[i % len(SIDES)]
        body, factor = scaled_jpeg(photo.path, side)
        answers = {}
        for name, engine in engines.items():
            start = time.perf_counter()
            answers[name] = faces_of(await engine.predict(Upload(body, photo.path.name)))
            seconds[name].append(time.perf_counter() - start)
        truth = [face.box.scaled(factor) for face in photo.faces]
        labelled += len(truth)
        for name, faces in answers.items():
            for face, j in zip(photo.faces, match_boxes(truth, [box for box, _ in faces]), strict=True):
                if j is not None:
                    found[name] += 1
                    correct[name] += faces[j][1] == CLASSES[face.label]
        whole, reduced = answers["whole"], answers["reduced"]
        match = match_boxes([b for b, _ in whole], [b for b, _ in reduced], SAME_FACE_IOU)
        only_one += len(whole) + len(reduced) - 2 * sum(j is not None for j in match)
        for (_, label), j in zip(whole, match, strict=True):
            if j is not None:
                pairs += 1
                same += label == reduced[j][1]
                if label != reduced[j][1]:
                    disagreements.append(f"{photo.path.name} at {side} px: {label} -> {reduced[j][1]}")
    return {
        "photos": len(photos), "labelled_faces": labelled,
        "detection_pairs": pairs, "same_label": same,
        "agreement": round(same / pairs, 4) if pairs else None,
        "detections_in_one_only": only_one,
        "disagreements": disagreements,
        "end_to_end": {name: {"found": found[name], "correct": correct[name],
                              "found_rate": round(found[name] / labelled, 4),
                              "accuracy": round(correct[name] / labelled, 4),
                              "ms_per_photo_mean": round(1000 * statistics.fmean(seconds[name]), 2)}
                       for name in engines},
    }


async def run(photos: list) -> dict:
    engines = {"whole": Engine(), "reduced": Engine(reduced_decode=True)}
    for engine in engines.values():
        await engine.start()
    try:
        return await measure(photos, engines)
    finally:
        for engine in engines.values():
            engine.close()


def write_markdown(result: dict, path: Path) -> None:
    e2e = result["end_to_end"]
    lines = [
        "# ferkit serve: the reduced JPEG decode against the whole decode (ExpW-dev)",
        "",
        f"Command: `{result['command']}`. Date: {result['date']}.",
        "",
        f"{result['photos']} ExpW-dev photos, each scaled up to a longest side of "
        f"{', '.join(map(str, SIDES))} px in turn (Lanczos, JPEG quality 90), through two engines "
        "of this checkout: `whole` decodes every image whole (the service's default), `reduced` "
        "decodes a JPEG of 640 px or more at the DCT scale nearest 320 px, cutting faces from it "
        "where it has a pixel for each crop pixel (`Engine(reduced_decode=True)`).",
        "",
        f"- Detections paired across the two (IoU >= {SAME_FACE_IOU}): {result['detection_pairs']}; "
        f"same label: {result['same_label']} (**{100 * (result['agreement'] or 0):.2f}%**); "
        f"detections in one engine's answer only: {result['detections_in_one_only']}.",
        "",
        "| engine | labelled faces found (IoU >= 0.3) | correct | accuracy (missed = wrong) "
        "| ms per photo |",
        "|---|---:|---:|---:|---:|",
        *[f"| {name} | {m['found']} ({100 * m['found_rate']:.2f}%) | {m['correct']} "
          f"| {100 * m['accuracy']:.2f}% | {m['ms_per_photo_mean']} |" for name, m in e2e.items()],
        "",
        "ms per photo: one request at a time in one process (decode, detect, crop, classify), "
        "beside other jobs on the machine; the load benchmark (serve_load.md) is the speed figure.",
        "",
        f"Label changes ({len(result['disagreements'])}): "
        + ("; ".join(result["disagreements"][:40]) or "none") + ".",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=SHARED / "data" / "expw-dev")
    p.add_argument("--limit", type=int, default=0, help="the first N photos only (0: all)")
    add_smoke_args(p)
    args = p.parse_args(argv)
    photos = list(load_labelled_photos(args.data).photos)
    if args.smoke or args.limit:
        photos = photos[: 20 if args.smoke else args.limit]
    result = {"command": "python benchmarks/serve_reduced_decode.py" + (" --smoke" if args.smoke else ""),
              "date": time.strftime("%Y-%m-%d %H:%M"), **asyncio.run(run(photos))}
    out = results_dir(args)
    (out / "serve_reduced_decode.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, out / "serve_reduced_decode.md")
    print((out / "serve_reduced_decode.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
