"""The ONNX graphs inside the package are those of the shipped weights.

The safetensors weights are the source of truth; ``ferkit export --shipped`` makes the graphs the
runtime runs. After new weights replace old ones, these tests fail until that command runs again.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from support.synthetic import group_photo

from ferkit.data import load_data, split_data
from ferkit.errors import FerkitError
from ferkit.imageio import load_image
from ferkit.models import store
from ferkit.models.io import load_model
from ferkit.models.store import file_sha256, list_models, read_card, resolve
from ferkit.runtime.graph import WEIGHTS_KEY, card_from_metadata
from ferkit.runtime.loader import load_classifier
from ferkit.runtime.onnx_backend import OnnxBackend
from ferkit.runtime.torch_backend import TorchBackend

REBUILD = "run `ferkit export --shipped`"


@pytest.fixture(scope="module")
def real_faces(recognizer, astronaut_png, fer_slice_csv) -> np.ndarray:
    """Crops of real faces: the portrait, three pasted copies, and 128 FER2013 test faces."""
    crops = [recognizer.locate(image)[1] for image in (load_image(astronaut_png), group_photo(astronaut_png))]
    return np.concatenate([*crops, split_data(load_data(fer_slice_csv))["test"].images])


@pytest.mark.parametrize("name", list_models())
def test_each_shipped_graph_is_exported_from_its_weights(name, real_faces):
    ref = resolve(name)
    assert ref.shipped and ref.weights is not None, f"{name}: no weights beside the card"
    assert ref.graph is not None, f"{name}: no graph; {REBUILD}"
    graph = OnnxBackend(ref.graph)
    card = card_from_metadata(graph.metadata(), str(ref.graph))
    assert card[WEIGHTS_KEY] == file_sha256(ref.weights), f"{ref.graph} is stale; {REBUILD}"
    source = read_card(ref.weights)
    assert (card["arch"], card["model"]) == (source["arch"], source["model"])
    expected = TorchBackend(load_model(name)[0]).probabilities(real_faces)
    assert np.abs(graph.probabilities(real_faces) - expected).max() < 1e-4, f"{name}: {REBUILD}"


def test_a_stale_graph_is_refused(tmp_path, monkeypatch):
    for suffix in (".onnx", ".json"):
        shutil.copy(store.WEIGHTS_DIR / f"default{suffix}", tmp_path / f"default{suffix}")
    shutil.copy(store.WEIGHTS_DIR / "paper.safetensors", tmp_path / "default.safetensors")  # new weights
    monkeypatch.setattr(store, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FerkitError, match="stale graph.*ferkit export --shipped"):
        load_classifier("default")
    assert load_classifier("default", "torch")[1]["name"] == "default"  # the weights still run


def test_the_card_comes_from_beside_the_weights_and_the_name_from_the_reference():
    _, card = load_classifier("paper")
    assert card["name"] == "paper" and card["metrics"] == read_card(resolve("paper").weights)["metrics"]
    assert json.loads(card["classes"])[3] == "happy" and card["precision"] == "float32"


@pytest.mark.parametrize("name", list_models())
def test_each_int8_graph_is_quantised_from_its_weights_and_keeps_the_labels(name, real_faces):
    """``--backend onnx-int8`` runs ``<name>.int8.onnx``: the same weights, labels kept on nearly
    every real face (on all of FER2013's test faces 98% for `default`: docs/speed.md#int8)."""
    ref = resolve(name)
    assert ref.int8_graph is not None, f"{name}: no int8 graph; {REBUILD} --calibration FER2013_CSV"
    int8, card = load_classifier(name, "onnx-int8", calibrated=False, prior="natural")
    assert card["precision"] == "int8" and card[WEIGHTS_KEY] == file_sha256(ref.weights), \
        f"{ref.int8_graph} is stale; {REBUILD} --calibration FER2013_CSV"
    float32, _ = load_classifier(name, "onnx", calibrated=False, prior="natural")
    same = (int8.probabilities(real_faces).argmax(1) == float32.probabilities(real_faces).argmax(1)).mean()
    assert same >= 0.92, f"{name}: the int8 graph keeps {same:.1%} of the float graph's labels"


def test_int8_is_refused_with_the_way_to_make_one_where_none_ships(tmp_path):
    graph = tmp_path / "mine.onnx"
    shutil.copy(store.WEIGHTS_DIR / "paper.onnx", graph)
    with pytest.raises(FerkitError, match="no int8 graph ships.*ferkit export --quantize int8"):
        load_classifier(str(graph), "onnx-int8")
