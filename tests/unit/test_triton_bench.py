"""The pure parts of tests/perf/triton_bench.py: CSV parsing, input data, targets, inventory, samples."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from edgefaas.deploy.inventory import HostData, Inventory, InventoryHost
from tests.perf import triton_bench as tb

pytestmark = pytest.mark.unit

# What perf_analyzer 2.51 wrote on these machines (-f), trimmed to two levels.
PA_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
    "1,25.3128,578,1925,501,305,35299,327,1,35196,52382,58843,72258\n"
    "2,26.9552,600,3136,32955,472,36289,340,1,70982,91182,101164,105791\n"
)


# -- perf_analyzer's CSV -------------------------------------------------------------------------


def test_perf_csv_rows_in_milliseconds():
    rows = tb.parse_perf_csv(PA_CSV)
    assert [r.concurrency for r in rows] == [1, 2]
    first = rows[0]
    assert first.throughput == pytest.approx(25.3128)
    assert first.p50_ms == pytest.approx(35.196)
    assert first.p99_ms == pytest.approx(72.258)
    assert first.server_queue_ms == pytest.approx(0.501)
    assert first.server_compute_ms == pytest.approx((305 + 35299 + 327) / 1000)
    # the components add up to the average latency perf_analyzer reports (38.9 ms for this level)
    assert first.avg_latency_ms == pytest.approx((578 + 1925 + 501 + 305 + 35299 + 327 + 1) / 1000)
    assert rows[1].server_queue_ms == pytest.approx(32.955)
    assert first.stability_pct == 25


def test_perf_csv_reads_only_the_first_table_and_keeps_the_stability():
    metrics = "\n\nServer Metrics\nGPU UUID,Avg GPU Utilization\nx,0\n"
    rows = tb.parse_perf_csv(PA_CSV + metrics, stability_pct=50)
    assert len(rows) == 2
    assert {r.stability_pct for r in rows} == {50}


def test_perf_csv_missing_optional_columns_are_nan():
    rows = tb.parse_perf_csv("Concurrency,Inferences/Second,p50 latency\n3,100.5,2500\n")
    assert rows[0].p50_ms == pytest.approx(2.5)
    assert math.isnan(rows[0].p99_ms)
    assert math.isnan(rows[0].server_queue_ms)


@pytest.mark.parametrize(
    "text",
    ["", "Concurrency,p50 latency\n1,200\n", "a,b,c\n1,2,3\n"],
    ids=["empty", "no-throughput", "not-perf-analyzer"],
)
def test_perf_csv_without_the_required_columns_is_refused(text):
    with pytest.raises(ValueError, match="not a perf_analyzer CSV"):
        tb.parse_perf_csv(text)


def test_perf_csv_with_a_non_number_is_refused():
    with pytest.raises(ValueError, match="bad perf_analyzer row"):
        tb.parse_perf_csv("Concurrency,Inferences/Second,p50 latency\n1,fast,200\n")


def test_merged_perf_csv_round_trips(tmp_path):
    rows = tb.parse_perf_csv(PA_CSV)
    path = tmp_path / "merged.csv"
    tb.write_perf_csv(rows, path)
    text = path.read_text().splitlines()
    assert text[0].startswith("concurrency,throughput,p50_ms")
    assert text[1].startswith("1,25.3128,35.196")
    assert len(text) == 3


# -- the frame and perf_analyzer's input data ----------------------------------------------------


def test_input_data_json_carries_every_pixel_with_its_shape():
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    document = tb.input_data_json(image)
    tensor = document["data"][0]["IMAGE"]
    assert tensor["shape"] == [480, 640, 3]
    assert len(tensor["content"]) == 480 * 640 * 3
    # row-major HWC order, exactly the values (perf_analyzer packs them as UINT8 in this order)
    assert np.array_equal(np.array(tensor["content"], dtype=np.uint8).reshape(480, 640, 3), image)
    again = json.loads(json.dumps(document))
    assert again["data"][0]["IMAGE"]["content"][:5] == image.reshape(-1)[:5].tolist()


def test_input_data_json_names_the_tensor():
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    assert list(tb.input_data_json(image, name="FRAME")["data"][0]) == ["FRAME"]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4, 3), dtype=np.float32), np.zeros((4, 4), dtype=np.uint8), np.zeros((4, 4, 4), np.uint8)],
    ids=["float", "grey", "rgba"],
)
def test_input_data_json_refuses_what_the_model_refuses(bad):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        tb.input_data_json(bad)


@pytest.mark.parametrize(
    ("text", "size"), [("640x480", (640, 480)), ("320X240", (320, 240)), (" 1280 x 720", (1280, 720))]
)
def test_frame_size(text, size):
    assert tb.parse_frame_size(text) == size


@pytest.mark.parametrize("text", ["640", "640x", "x480", "640x480x3", "0x480", "-1x4", "axb"])
def test_frame_size_refused(text):
    with pytest.raises(ValueError):
        tb.parse_frame_size(text)


def test_letterbox_keeps_the_aspect_and_centres_on_black():
    tall = np.full((600, 512, 3), 200, dtype=np.uint8)  # the sample photo's shape
    framed = tb.letterbox(tall, (640, 480))
    assert framed.shape == (480, 640, 3)
    assert framed.dtype == np.uint8
    columns = np.flatnonzero(framed[240, :, 0])
    # 512 * 480/600 = 409.6 -> 410 columns of picture, centred: 115 black each side
    assert len(columns) == 410
    assert columns[0] == 115
    assert (framed[:, :115] == 0).all()
    assert (framed[:, 525:] == 0).all()


def test_letterbox_upscales_a_small_picture_to_fill_one_side():
    small = np.full((10, 40, 3), 9, dtype=np.uint8)
    framed = tb.letterbox(small, (640, 480))
    rows = np.flatnonzero(framed[:, 320, 0])
    assert framed.shape == (480, 640, 3)
    assert len(rows) == 160  # 10 * 640/40
    assert rows[0] == 160


def test_frame_of_the_sample_photo_is_a_640x480_jpeg():
    pytest.importorskip("matplotlib")
    from edgefaas.vision.images import decode_image

    jpeg = tb.frame_jpeg(None)
    assert jpeg.startswith(b"\xff\xd8\xff")
    assert decode_image(jpeg).shape == (480, 640, 3)


def test_frame_of_the_right_size_is_sent_untouched(tmp_path):
    import cv2

    picture = np.random.default_rng(1).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", picture)
    assert ok
    path = tmp_path / "camera.jpg"
    path.write_bytes(encoded.tobytes())
    assert tb.frame_jpeg(path, (64, 48)) == encoded.tobytes()
    assert tb.frame_jpeg(path, (128, 96)) != encoded.tobytes()


# -- targets --------------------------------------------------------------------------------------


def _figures(p50: float, rps: float = 10.0, calls: int = 100, served_by: dict | None = None) -> tb.Figures:
    return tb.Figures(calls, 0, 10.0, p50, p50, p50, p50, rps, served_by or {})


@pytest.mark.parametrize(
    ("value", "ok"), [(20.0, True), (19.99, False), (35.0, True), (None, False), (math.nan, False)]
)
def test_at_least_verdict(value, ok):
    assert tb.Verdict("fps", value, 20.0, True).ok is ok


@pytest.mark.parametrize(("value", "ok"), [(1.15, True), (1.1501, False), (0.9, True), (None, False)])
def test_at_most_verdict(value, ok):
    verdict = tb.Verdict("ratio", value, 1.15, False)
    assert verdict.ok is ok
    assert verdict.label == ("PASS" if ok else "FAIL")
    assert verdict.to_json()["ok"] is ok


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(46.0, 40.0, 1.15), (10.0, 0.0, None), (math.nan, 1.0, None), (1.0, math.nan, None)],
)
def test_ratio(a, b, expected):
    assert tb.ratio(a, b) == (pytest.approx(expected) if expected is not None else None)


def test_fps_from_perf_analyzer_first_then_locust():
    rows = tb.parse_perf_csv(PA_CSV)[:1]  # only concurrency 1 measured by perf_analyzer
    direct = {1: _figures(40.0, rps=24.0), 2: _figures(80.0, rps=18.5)}
    one, two = tb.fps_verdicts(rows, direct)
    assert (one.value, one.source, one.ok) == (pytest.approx(25.3128), "perf_analyzer", True)
    assert (two.value, two.source, two.ok) == (18.5, "locust TritonUser", False)


def test_fps_not_measured_fails():
    (one, two) = tb.fps_verdicts([], {})
    assert one.value is None
    assert not one.ok
    assert two.source == "not measured"


SERVER = "http://10.77.0.12:8000"


def test_ratio_judged_on_same_server_calls_when_there_are_enough():
    direct = _figures(40.0, served_by={SERVER: 200})
    function = _figures(60.0, served_by={SERVER: 150, "http://10.77.0.11:8000": 50})
    same = _figures(44.0, served_by=function.served_by)
    verdict = tb.ratio_verdict(1, direct, function, same, SERVER + "/")
    assert verdict.value == pytest.approx(1.1)
    assert verdict.ok
    assert "150 function calls" in verdict.source


def test_ratio_judged_on_all_calls_when_the_function_went_elsewhere():
    direct = _figures(40.0, served_by={SERVER: 200})
    function = _figures(60.0, served_by={SERVER: tb.SAME_SERVER_MIN_CALLS - 1, "http://10.77.0.11:8000": 150})
    same = _figures(44.0, served_by=function.served_by)
    verdict = tb.ratio_verdict(2, direct, function, same, SERVER)
    assert verdict.value == pytest.approx(1.5)
    assert not verdict.ok
    assert verdict.source == "all function calls"
    assert verdict.name == "function/direct p50 at 2 users"


# -- samples --------------------------------------------------------------------------------------


def test_summarize_leaves_out_warmup_counts_errors_and_servers():
    run = {
        "samples": [
            {"t": 0.5, "ms": 999.0, "ok": True, "served_by": "a"},  # warm-up: left out
            {"t": 2.0, "ms": 10.0, "ok": True, "served_by": "a"},
            {"t": 3.0, "ms": 30.0, "ok": True, "served_by": "b/"},
            {"t": 4.0, "ms": 20.0, "ok": False},
            {"t": 6.0, "ms": 40.0, "ok": True, "served_by": "a"},
        ]
    }
    figures = tb.summarize([run, {"samples": []}], warmup=1.0)
    assert figures.calls == 3
    assert figures.errors == 1
    assert figures.seconds == pytest.approx(5.0)
    assert figures.rps == pytest.approx(0.6)
    assert figures.p50_ms == 30.0
    assert figures.p99_ms == 40.0
    assert figures.served_by == {"a": 2, "b": 1}
    only_a = tb.summarize([run], warmup=1.0, server="a")
    assert only_a.p50_ms == 10.0  # latencies of a's calls only (10, 40)
    assert only_a.calls == 3  # throughput stays over every call


def test_summarize_splits_the_function_path_into_inference_and_the_rest():
    run = {
        "samples": [
            {"t": 1.0, "ms": 50.0, "ok": True, "served_by": "a", "inference_ms": 40.0},
            {"t": 2.0, "ms": 90.0, "ok": True, "served_by": "b", "inference_ms": 30.0},
            {"t": 3.0, "ms": 70.0, "ok": True, "served_by": "a", "inference_ms": 45.0},
        ]
    }
    everything = tb.summarize([run], warmup=0.0)
    assert everything.inference_p50_ms == 40.0
    assert everything.outside_inference_p50_ms == 25.0  # of 10, 60, 25
    only_a = tb.summarize([run], warmup=0.0, server="a")
    assert only_a.inference_p50_ms == 40.0  # of 40, 45
    assert only_a.outside_inference_p50_ms == 10.0  # of 10, 25
    direct = tb.summarize([{"samples": [{"t": 1.0, "ms": 5.0, "ok": True}]}], warmup=0.0)
    assert math.isnan(direct.inference_p50_ms)


def test_summarize_of_nothing():
    figures = tb.summarize([], warmup=2.0)
    assert figures.calls == 0
    assert figures.rps == 0.0
    assert math.isnan(figures.p50_ms)


# -- inventory -> URLs ----------------------------------------------------------------------------


def _inventory(*hosts: tuple[str, tuple[str, ...], dict]) -> Inventory:
    return Inventory(tuple(InventoryHost(name, groups, HostData(data)) for name, groups, data in hosts))


def test_targets_from_inventory():
    inventory = _inventory(
        ("sonic-1", ("sonic", "k3s_server"), {"ssh_hostname": "10.77.0.11", "triton_server": True}),
        ("sonic-2", ("sonic", "k3s_agent"), {"ssh_hostname": "10.77.0.12", "triton_server": False}),
        (
            "jetson-1",
            ("jetson", "k3s_agent"),
            {
                "ssh_hostname": "10.77.0.13",
                "triton_server": True,
                "triton_http_port": 9000,
                "triton_grpc_port": 9001,
            },
        ),
    )
    targets = tb.targets_from_inventory(inventory)
    assert [s.name for s in targets.servers] == ["sonic-1", "jetson-1"]
    assert targets.servers[0].http_url == "http://10.77.0.11:8000"
    assert targets.servers[0].grpc_url == "10.77.0.11:8001"
    assert targets.servers[1].http_url == "http://10.77.0.13:9000"
    assert targets.servers[1].grpc_url == "10.77.0.13:9001"
    assert targets.gateway_url == "http://10.77.0.11:8080"


def test_gateway_port_and_url_from_host_data():
    server = (
        "s",
        ("k3s_server",),
        {"ssh_hostname": "192.0.2.1", "triton_server": 1, "edgefaas_gateway_port": 31112},
    )
    assert tb.targets_from_inventory(_inventory(server)).gateway_url == "http://192.0.2.1:31112"
    configured = (
        "s",
        ("k3s_server",),
        {"triton_server": True, "edgefaas_gateway_url": "http://gw.example:80/"},
    )
    targets = tb.targets_from_inventory(_inventory(configured))
    assert targets.gateway_url == "http://gw.example:80"
    assert targets.servers[0].http_url == "http://s:8000"  # no ssh_hostname: the host's name


def test_inventory_without_a_k3s_server_has_no_gateway():
    targets = tb.targets_from_inventory(_inventory(("d", ("jetson",), {"triton_server": True})))
    assert targets.gateway_url is None


def test_inventory_without_triton_is_refused():
    with pytest.raises(tb.BenchError, match="triton_server"):
        tb.targets_from_inventory(_inventory(("s", ("k3s_server",), {"ssh_hostname": "10.0.0.1"})))


def test_pick_server():
    servers = [
        tb.TritonServer("sonic-1", "http://10.77.0.11:8000", "10.77.0.11:8001"),
        tb.TritonServer("sonic-2", "http://10.77.0.12:8000", "10.77.0.12:8001"),
    ]
    used = Counter({"http://10.77.0.99:8000": 7, "http://10.77.0.12:8000/": 2, "http://10.77.0.11:8000": 1})
    chosen, why = tb.pick_server(servers, None, used)
    assert chosen.name == "sonic-2"  # the unknown server is skipped
    assert "2 of 10" in why
    assert tb.pick_server(servers, "sonic-1", used)[0].name == "sonic-1"
    assert tb.pick_server(servers, "10.77.0.11:8000", used)[0].name == "sonic-1"
    assert tb.pick_server(servers, None, Counter())[0].name == "sonic-1"
    with pytest.raises(tb.BenchError, match="--server"):
        tb.pick_server(servers, "jetson-1", used)


def test_perf_analyzer_command_line(tmp_path):
    analyzer = tb.PerfAnalyzer(tmp_path / "pa" / "bin" / "perf_analyzer", tmp_path / "log")
    argv = analyzer.argv(
        "face_expression", "http://10.77.0.12:8000", 2, tmp_path / "c.csv", 40, 25, 15, tmp_path / "in.json"
    )
    joined = " ".join(argv)
    assert "-u 10.77.0.12:8000" in joined
    assert "--concurrency-range 2:2" in joined
    assert "--measurement-mode count_windows --measurement-request-count 40 -s 25 --max-trials 15" in joined
    assert argv[-2:] == ["--input-data", str(tmp_path / "in.json")]
    assert analyzer.env["LD_LIBRARY_PATH"] == str(tmp_path / "pa" / "lib")
    assert "--input-data" not in analyzer.argv("add_sub", "h:8000", 1, tmp_path / "c.csv", 9, 25, 15, None)


def test_failed_calls_make_a_run_untrusted():
    fine = tb.Figures(990, 10, 10.0, 1, 1, 1, 1, 99.0)
    assert tb.failure_problem("direct at 1 users", fine) is None  # exactly 1%: kept
    storm = tb.Figures(36, 4177, 10.0, 1, 1, 1, 1, 3.6)
    problem = tb.failure_problem("direct at 1 users", storm)
    assert problem is not None
    assert "4177 of 4213" in problem
    assert "direct at 1 users" in problem
    assert (
        tb.failure_problem("8 clients", tb.Figures(0, 0, 0.0, 1, 1, 1, 1, 0.0))
        == "8 clients: no call finished"
    )
