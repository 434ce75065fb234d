"""``ferkit export --format onnx`` and the onnxruntime backend agree with PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import run_ferkit
from support.synthetic import group_photo

from ferkit.cli import main
from ferkit.errors import FerkitError
from ferkit.imageio import load_image
from ferkit.inference import Recognizer
from ferkit.models.io import load_model
from ferkit.runtime.graph import INPUT_NAME
from ferkit.runtime.onnx_backend import CHUNK, OnnxBackend
from ferkit.runtime.torch_backend import TorchBackend


@pytest.fixture(scope="module")
def faces(recognizer, astronaut_png) -> np.ndarray:
    """Real face crops (the portrait and three pasted copies) plus random and flat patches."""
    real = [recognizer.locate(image)[1] for image in (load_image(astronaut_png), group_photo(astronaut_png))]
    noise = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    flat = np.stack([np.zeros((48, 48), np.uint8), np.full((48, 48), 255, np.uint8)])
    return np.concatenate([*real, noise, flat])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("onnx") / "paper.onnx"
    assert main(["export", "--model", "paper", "--format", "onnx", "--out", str(path)]) == 0
    return str(path)


def test_export_is_a_valid_graph_with_a_dynamic_batch(exported):
    model = onnx.load(exported)
    onnx.checker.check_model(model)
    (inp,) = model.graph.input
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [48, 48]
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["classes"])[3] == "happy" and props["ferkit_model"] == "paper"


def test_onnxruntime_matches_torch_within_1e4(exported, faces):
    session = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
    torch_probs = TorchBackend(load_model("paper")[0]).probabilities(faces)
    for batch in (faces[:1], faces):  # batch 1 and batch N through the same graph
        onnx_probs = session.run(None, {"faces": batch})[0]
        assert onnx_probs.shape == (len(batch), 7)
        assert np.abs(onnx_probs - torch_probs[: len(batch)]).max() < 1e-4


def test_onnx_backend_recognizer_matches_torch(recognizer, astronaut_png):
    assert recognizer.backend_name == "onnx"  # the default
    torch_rec = Recognizer(backend="torch")
    image = group_photo(astronaut_png)
    a, b = recognizer.predict(image), torch_rec.predict(image)
    assert [f.box for f in a.faces] == [f.box for f in b.faces] and len(a.faces) == 3
    for fa, fb in zip(a.faces, b.faces, strict=True):
        assert fa.label == fb.label
        diff = np.array(list(fa.probabilities.values())) - list(fb.probabilities.values())
        assert np.abs(diff).max() < 1e-4


def test_parallel_chunks_keep_every_face_in_order(exported, faces):
    """Runs over chunks of the batch, several at once, give what one run over the batch gives,
    face for face, whatever the batch size against the chunk size and the threads."""
    rng = np.random.default_rng(1)
    batch = np.concatenate([faces, rng.integers(0, 256, (37 - len(faces), 48, 48), dtype=np.uint8)])
    session = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
    whole = session.run(None, {INPUT_NAME: batch})[0]
    for threads, chunk in ((1, CHUNK), (2, CHUNK), (3, CHUNK), (2, 5)):
        backend = OnnxBackend(Path(exported), threads=threads, chunk=chunk)
        for n in (0, 1, 2, 3, 9, 37):
            probs = backend.probabilities(batch[:n])
            assert probs.shape == (n, 7) and probs.dtype == np.float32
            assert np.allclose(probs, whole[:n], rtol=0, atol=1e-5), (threads, chunk, n)
    with pytest.raises(FerkitError, match="at least 1"):
        OnnxBackend(Path(exported), threads=-1)


FORK_AND_EXIT = '''
import atexit, os, signal, sys
from pathlib import Path
import numpy as np
from ferkit.runtime.onnx_backend import OnnxBackend

backend = OnnxBackend(Path(sys.argv[1]), threads=2)
faces = np.random.default_rng(0).integers(0, 256, (32, 48, 48), dtype=np.uint8)
expected = backend.probabilities(faces)  # starts the pool's threads
pid = os.fork()
if pid == 0:  # the child inherits the pool but not its threads
    signal.alarm(30)
    os._exit(0 if np.allclose(backend.probabilities(faces), expected, atol=1e-6) else 3)
print("forked child:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
# At exit the interpreter shuts executors down before atexit handlers run.
atexit.register(lambda: print("at exit:", np.allclose(backend.probabilities(faces), expected, atol=1e-6)))
'''


def test_backend_works_in_a_forked_child_and_at_exit(exported):
    """A forked child (multiprocessing's default on Linux) and an atexit handler still classify."""
    done = subprocess.run([sys.executable, "-c", FORK_AND_EXIT, exported], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["forked child: 0", "at exit: True"], done.stdout + done.stderr


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    code = main(["export", "--model", "nonexistent-model", "--out", str(tmp_path / "x.onnx")])
    assert code == 2 and "unknown model" in capsys.readouterr().err


@pytest.fixture(scope="module")
def int8_graph(tmp_path_factory, fer_slice_csv) -> str:
    path = tmp_path_factory.mktemp("int8") / "paper.int8.onnx"
    assert main(["export", "--model", "paper", "--quantize", "int8", "--calibration", str(fer_slice_csv),
                 "--out", str(path)]) == 0
    return str(path)


def test_int8_export_is_quantised_and_agrees_with_float_on_real_faces(int8_graph, fer_slice_csv):
    from ferkit.data import load_data, split_data

    model = onnx.load(int8_graph)
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) > 10
    props = {p.key: p.value for p in model.metadata_props}
    assert props["precision"] == "int8" and json.loads(props["classes"])[3] == "happy"
    faces = split_data(load_data(fer_slice_csv))["test"].images
    int8 = Recognizer(int8_graph, detector=None, backend="onnx", prior="natural").classify(faces)
    exact = TorchBackend(load_model("paper")[0]).probabilities(faces)
    assert (int8.argmax(1) == exact.argmax(1)).mean() >= 0.9
    assert np.abs(int8 - exact).mean() < 0.05
    labels = split_data(load_data(fer_slice_csv))["test"].labels
    result = run_ferkit("eval", "--model", int8_graph, "--data", fer_slice_csv, "--json",
                        "--prior", "natural")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 128 and metrics["model"] == "paper.int8.onnx"
    assert metrics["accuracy"] == pytest.approx((int8.argmax(1) == labels).mean())


def test_cli_predicts_with_an_exported_int8_graph(int8_graph, astronaut_png):
    result = run_ferkit("predict", astronaut_png, "--model", int8_graph, "--json")
    assert result.returncode == 0, result.stderr
    (face,) = json.loads(result.stdout)["faces"]
    assert face["label"] == "happy"


def test_quantising_without_calibration_data_or_running_onnx_in_torch_is_a_clear_error(
    tmp_path, capsys, exported
):
    code = main(["export", "--model", "paper", "--quantize", "int8", "--out", str(tmp_path / "q.onnx")])
    assert code == 2 and "--quantize int8 needs --calibration DATA" in capsys.readouterr().err
    code = main(["export", "--model", "paper", "--calibration", "x.csv", "--out", str(tmp_path / "q.onnx")])
    assert code == 2 and "--calibration is only used with --quantize int8" in capsys.readouterr().err
    from PIL import Image

    (tmp_path / "no_train" / "train").mkdir(parents=True)  # test faces only: nothing to calibrate on
    (tmp_path / "no_train" / "test" / "happy").mkdir(parents=True)
    Image.new("L", (48, 48), 128).save(tmp_path / "no_train" / "test" / "happy" / "a.png")
    code = main(["export", "--model", "paper", "--quantize", "int8", "--calibration",
                 str(tmp_path / "no_train"), "--out", str(tmp_path / "q.onnx")])
    assert code == 2 and "no training images" in capsys.readouterr().err
    with pytest.raises(FerkitError, match="runs with backend 'onnx'"):
        Recognizer(exported, backend="torch")
    foreign = onnx.load(exported)
    del foreign.metadata_props[:]  # a graph from elsewhere: its class order is unknown
    onnx.save(foreign, tmp_path / "foreign.onnx")
    with pytest.raises(FerkitError, match="not a graph from `ferkit export`"):
        Recognizer(tmp_path / "foreign.onnx", backend="onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    result = run_ferkit("predict", "x.png", "--model", tmp_path / "broken.onnx")
    assert result.returncode == 2 and "cannot load ONNX model" in result.stderr
    assert "Traceback" not in result.stderr
