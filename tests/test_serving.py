"""The TF Serving client against TF Serving's documented REST (and gRPC) formats, and a loopback server."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from mtkeras import serving
from mtkeras.spec import LabelGroup, TaskSpec

SPEC = TaskSpec(encoder="unused", groups=[
    LabelGroup("section", "multiclass", labels=["net", "utils"]),
    LabelGroup("use", "multilabel", labels=["converting", "editing", "viewing"]),
])

# The shapes below are TF Serving's REST API as documented (tensorflow.org/tfx/serving/api_rest):
# row format {"instances": [...]} -> {"predictions": [...]}, columnar {"inputs": ...} -> {"outputs": ...}.
ROW_RESPONSE = {
    "predictions": [
        {"section_labels": "utils", "section_probabilities": [0.1, 0.9],
         "use_labels": ["converting", "viewing", ""], "use_probabilities": [0.8, 0.2, 0.7]},
        {"section_labels": "net", "section_probabilities": [0.7, 0.3],
         "use_labels": ["", "", ""], "use_probabilities": [0.1, 0.2, 0.3]},
    ]
}
COLUMNAR_RESPONSE = {
    "outputs": {
        "section_labels": ["utils", "net"],
        "section_probabilities": [[0.1, 0.9], [0.7, 0.3]],
        "use_labels": [["converting", "viewing", ""], ["", "", ""]],
        "use_probabilities": [[0.8, 0.2, 0.7], [0.1, 0.2, 0.3]],
    }
}
EXPECTED = [{"section": "utils", "use": ["converting", "viewing"]}, {"section": "net", "use": []}]


def test_rest_request_body_and_url():
    assert serving.build_rest_request(["a", "b"]) == {
        "signature_name": "serving_default", "instances": [{"text": "a"}, {"text": "b"}]
    }
    assert serving.rest_url("http://h:8501/", "debtags") == "http://h:8501/v1/models/debtags:predict"
    assert serving.rest_url("http://h:8501", "debtags", 3) == "http://h:8501/v1/models/debtags/versions/3:predict"
    with pytest.raises(TypeError, match=r"`texts` must be a list of strings, received a single str"):
        serving.build_rest_request("a")


def test_parse_row_and_columnar_responses():
    assert serving.parse_rest_response(ROW_RESPONSE, SPEC) == EXPECTED
    assert serving.parse_rest_response(COLUMNAR_RESPONSE, SPEC) == EXPECTED
    with_probs = serving.parse_rest_response(ROW_RESPONSE, SPEC, with_probabilities=True)
    assert with_probs[0]["use_probabilities"] == [0.8, 0.2, 0.7]


def test_parse_errors():
    with pytest.raises(RuntimeError, match=r"TF Serving answered with an error: Servable not found"):
        serving.parse_rest_response({"error": "Servable not found for request"}, SPEC)
    with pytest.raises(ValueError, match=r"expected 'predictions' or 'outputs', received keys \['result'\]"):
        serving.parse_rest_response({"result": []}, SPEC)
    with pytest.raises(ValueError, match=r"The served answer has no 'section_labels' for multiclass group 'section'; "
                                         r"received outputs \['scores'\]. Is the client's spec the one of this export"):
        serving.parse_rest_response({"predictions": [{"scores": [0.1]}]}, SPEC)
    with pytest.raises(ValueError, match=r"`predictions` hold bare values"):
        serving.parse_rest_response({"predictions": [[0.1, 0.9]]}, SPEC)
    with pytest.raises(ValueError, match=r"`protocol` must be one of \['rest', 'grpc'\], received 'http'"):
        serving.ServingClient("http://x", "m", SPEC, protocol="http")
    with pytest.raises(TypeError, match=r"`spec` must be a TaskSpec, an export's metadata or spec dict, or the path"):
        serving.ServingClient("http://x", "m", 3)
    # Once accepted, and failing at the first request (or never, for version 0: the latest was served).
    with pytest.raises(ValueError, match=r"`version` must be a positive integer up to 2\*\*63 - 1 .*received 0"):
        serving.ServingClient("http://x", "m", SPEC, version=0)
    with pytest.raises(ValueError, match=r"ServingClient `url` must be http://host:8501 for REST, received "
                                         r"'localhost:8501'"):
        serving.ServingClient("localhost:8501", "m", SPEC)
    with pytest.raises(ValueError, match=r"ServingClient `url` must be host:8500 \(no scheme\) for gRPC, received "
                                         r"'http://x:8500'"):
        serving.ServingClient("http://x:8500", "m", SPEC, protocol="grpc")


def test_client_spec_from_files(tmp_path):
    SPEC.save(tmp_path / "spec.json")
    assert serving.load_client_spec(tmp_path) == SPEC  # a model folder
    assert serving.load_client_spec(str(tmp_path / "spec.json")) == SPEC
    export = tmp_path / "export" / "1"
    (export / "assets.extra").mkdir(parents=True)
    (export / "assets.extra" / "mtkeras.json").write_text(json.dumps({"format": "mtkeras-export",
                                                                      "spec": SPEC.to_dict()}))
    assert serving.load_client_spec(export) == SPEC
    with pytest.raises(FileNotFoundError, match=r"holds neither assets.extra/mtkeras.json \(an export\) nor spec.json"):
        serving.load_client_spec(tmp_path / "export")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON"):
        serving.load_client_spec(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[1]")
    with pytest.raises(ValueError, match=r"other.json: not an mtkeras spec or export metadata"):
        serving.load_client_spec(tmp_path / "other.json")


def test_grpc_request_and_response():
    from mtkeras._compat import tf

    request = serving.build_grpc_request(["a text", "another"], "debtags", version=2)
    assert request.model_spec.name == "debtags" and request.model_spec.version.value == 2
    assert request.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(request.inputs["text"]).tolist() == [b"a text", b"another"]

    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    for name, values in COLUMNAR_RESPONSE["outputs"].items():
        array = np.array(values, dtype=object if "labels" in name else np.float32)
        response.outputs[name].CopyFrom(tf.make_tensor_proto(array))
    assert serving.parse_grpc_response(response, SPEC) == EXPECTED


class FakeServing(BaseHTTPRequestHandler):
    """Answers like TF Serving's REST API; remembers what it was sent."""

    received: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeServing.received.append((self.path, body))
        if self.path.endswith("/missing:predict"):
            self.send_response(404)
            payload = {"error": "Servable not found for request: Latest(missing)"}
        else:
            self.send_response(200)
            rows = ROW_RESPONSE["predictions"]
            payload = {"predictions": [rows[i % 2] for i in range(len(body["instances"]))]}
        data = json.dumps(payload).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_client_over_loopback_http():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeServing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        client = serving.ServingClient(url, "debtags", SPEC, version=1, timeout=10)
        assert client.predict(["x", "y"]) == EXPECTED
        path, body = FakeServing.received[-1]
        assert path == "/v1/models/debtags/versions/1:predict"
        assert body == {"signature_name": "serving_default", "instances": [{"text": "x"}, {"text": "y"}]}
        assert client.predict([]) == []
        with pytest.raises(RuntimeError, match=r"answered HTTP 404: .*Servable not found"):
            serving.ServingClient(url, "missing", SPEC, timeout=10).predict(["x"])
    finally:
        server.shutdown()
        server.server_close()
    # Nothing listens there now: the error names the request's URL (once a bare "[Errno 111] Connection refused").
    with pytest.raises(ConnectionError, match=r"No answer from TF Serving at http://127.0.0.1:\d+/v1/models/debtags"
                                              r"/versions/1:predict \(`url` 'http://127.0.0.1:\d+', timeout 10 s\)"):
        client.predict(["x"])
