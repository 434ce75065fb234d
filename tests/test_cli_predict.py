"""``ferkit predict`` as a user runs it: real subprocesses, real files, a corpus of bad inputs."""

from __future__ import annotations

import csv
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferkit.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_ferkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ferkit", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 100_000) -> bytes:
    """A tiny PNG whose header declares side x side pixels (10 gigapixels for the default)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    data = png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + header + data + png_chunk(b"IEND", b"")


def exif_rotated_jpeg(upright: Image.Image) -> bytes:
    """The pixels stored turned a quarter left, with EXIF orientation 6 saying how to turn them back."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    upright.rotate(90, expand=True).save(buf, "JPEG", quality=92, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus(astronaut_png, tmp_path_factory) -> dict[str, Path]:
    """Broken and odd-but-valid files, made now from the real photo (nothing binary is committed)."""
    folder = tmp_path_factory.mktemp("corpus")
    photo = Image.open(astronaut_png).convert("RGB")
    jpeg = io.BytesIO()
    photo.save(jpeg, "JPEG", quality=90)
    gray16 = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    files = {
        "empty.jpg": b"",
        "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 3],
        "text.jpg": b"this is not an image, just text with a .jpg name\n" * 20,
        "bomb.png": bomb_png(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    Image.fromarray(gray16).save(folder / "gray16.png")
    rgba = photo.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(folder / "rgba.png")
    photo.convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    (folder / "exif_rotated.jpg").write_bytes(exif_rotated_jpeg(photo.crop((0, 0, 512, 384))))
    Image.new("RGB", (1, 1), (128, 64, 32)).save(folder / "one_pixel.png")
    return {p.name: p for p in folder.iterdir()}


def test_astronaut_json_is_one_happy_face(astronaut_png):
    proc = run_ferkit("predict", str(astronaut_png), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["model"] == "default"
    assert len(result["faces"]) == 1
    assert result["faces"][0]["label"] == "happy"


def test_bad_inputs_are_reported_one_by_one_without_tracebacks(corpus):
    assert Image.open(corpus["gray16.png"]).mode.startswith("I")  # really 16-bit
    assert Image.open(corpus["cmyk.jpg"]).mode == "CMYK"
    proc = run_ferkit("predict", "--json", *sorted(str(p) for p in corpus.values()))
    assert proc.returncode == 1  # some files failed, the others were processed
    assert "Traceback" not in proc.stderr + proc.stdout
    results = {Path(r["source"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(results) == set(corpus)
    expected_errors = {"empty.jpg": "empty", "truncated.jpg": "truncated", "text.jpg": "not a recognised",
                       "bomb.png": "too large"}
    for name, words in expected_errors.items():
        assert words in results[name]["error"], results[name]
        # ... and one clear line on stderr naming the file.
        assert sum(name in line and words in line for line in proc.stderr.splitlines()) == 1
    for name in ("gray16.png", "rgba.png", "cmyk.jpg", "exif_rotated.jpg"):
        assert "error" not in results[name], results[name]
        assert len(results[name]["faces"]) == 1, (name, results[name])
    # EXIF orientation was applied: upright size, and the (upright-only) detector found the face.
    assert (results["exif_rotated.jpg"]["width"], results["exif_rotated.jpg"]["height"]) == (512, 384)
    assert results["one_pixel.png"]["faces"] == [] and "no face" in results["one_pixel.png"]["note"]


def test_postscript_is_not_decoded(tmp_path):
    """EPS would run Ghostscript: refused as an unlisted format, in one line naming only the file."""
    eps = tmp_path / "figure.eps"
    Image.new("RGB", (64, 48), (90, 90, 90)).save(eps, "EPS")
    proc = run_ferkit("predict", "--json", str(eps))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"ferkit: {eps}: not a recognised image format (ferkit reads JPEG, PNG, BMP, GIF, TIFF, WebP "
        "and PGM/PPM)"]
    assert "ghostscript" not in proc.stdout.lower() + proc.stderr.lower()


def test_folders_globs_missing_files_table_and_annotations(corpus, astronaut_png, tmp_path, capsys):
    folder = Path(corpus["rgba.png"]).parent
    out_dir = tmp_path / "annotated"
    code = main(["predict", str(astronaut_png), str(folder / "*.png"), str(tmp_path / "missing.jpg"),
                 "--annotate", str(out_dir)])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.out.splitlines()
    assert lines[0].split()[:2] == ["source", "face"]
    assert any("astronaut.png" in line and "1" in line for line in lines[1:])
    assert any("one_pixel.png" in line and "no face" in line for line in lines[1:])
    assert "missing.jpg: no such file" in captured.err
    assert "bomb.png" in captured.err  # the glob matched it; it failed alone
    written = sorted(p.name for p in out_dir.iterdir())
    assert "astronaut.annotated.png" in written and "rgba.annotated.png" in written
    assert Image.open(out_dir / "astronaut.annotated.png").size == (512, 512)


def test_csv_has_a_row_per_face_and_a_row_per_failure(corpus, astronaut_png, capsys):
    code = main(["predict", "--csv", str(astronaut_png), str(corpus["text.jpg"])])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert code == 1
    assert rows[0]["source"] == str(astronaut_png) and rows[0]["face"] == "1"
    assert abs(sum(float(rows[0][c]) for c in ("angry", "disgust", "fear", "happy", "sad", "surprise",
                                                 "neutral")) - 1) < 1e-4
    assert rows[1]["error"].startswith("not a recognised image format")


def test_no_detect_treats_each_file_as_a_face(corpus, capsys):
    code = main(["predict", "--json", "--no-detect", str(corpus["one_pixel.png"])])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert len(result["faces"]) == 1 and result["faces"][0]["box"] is None


def test_folder_says_what_it_skipped_and_why(astronaut_png, tmp_path):
    import os

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "astronaut.png").write_bytes(astronaut_png.read_bytes())
    (folder / "sub" / "astronaut_without_suffix").write_bytes(astronaut_png.read_bytes())
    (folder / "photo.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (folder / "icon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")  # dangling
    (folder / "loop.png").symlink_to(folder / "loop.png")  # a link to itself
    os.mkfifo(folder / "pipe.jpg")  # opening it would block: it must not be opened
    proc = run_ferkit("predict", "--json", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert [Path(json.loads(line)["source"]).name for line in proc.stdout.splitlines()] == ["astronaut.png"]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    note = lines[0]
    assert note.startswith(f"ferkit: {folder}: skipped 7 of 8 entries: "), note
    assert "4 without an image suffix (.heic, .svg, .txt, no suffix)" in note
    assert "2 dangling or looping link" in note and "1 not a regular file" in note
    assert ".png" in note.split("images are read from")[1]


def test_predict_with_the_int8_graph_finds_the_same_face(astronaut_png):
    """``--backend onnx-int8`` runs the shipped int8 graph; an unknown backend is a one-line error."""
    r = run_ferkit("predict", str(astronaut_png), "--backend", "onnx-int8", "--json")
    assert r.returncode == 0, r.stderr
    faces = json.loads(r.stdout.splitlines()[0])["faces"]
    assert len(faces) == 1 and faces[0]["label"] == "happy"
    bad = run_ferkit("predict", str(astronaut_png), "--backend", "int4")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and "Traceback" not in bad.stderr
