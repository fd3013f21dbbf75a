"""A small TF Serving client: texts in, label dicts out, over REST (standard library) or gRPC.

REST follows TF Serving's documented predict API
(``POST /v1/models/<name>[/versions/<v>]:predict``): the request is
``{"signature_name": ..., "instances": [{"text": ...}, ...]}`` (row format) and
the response ``{"predictions": [{"<group>_labels": ..., "<group>_probabilities": [...]}, ...]}``
(``<group>_values`` for regression groups; ``<group>_words`` and ``<group>_offsets`` beside the labels
of token-level groups, which come back as a list of words with offsets and labels);
the columnar form (``"inputs"`` → ``"outputs"``) is read too. gRPC needs the
optional extra ``pip install mtkeras[grpc]`` (tensorflow-serving-api).

Example:
    >>> client = ServingClient("http://localhost:8501", "debtags")
    >>> client.predict(["GNU image manipulation program"])
    [{'section': 'graphics', 'use': ['editing'], ...}]
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from mtkeras.data import check_texts

LABELS_SUFFIX = "_labels"
PROBABILITIES_SUFFIX = "_probabilities"
VALUES_SUFFIX = "_values"
WORDS_SUFFIX, OFFSETS_SUFFIX = "_words", "_offsets"


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _labels(value: Any) -> Any:
    """A multiclass label (one string) or a multilabel list with the '' padding removed."""
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value if _text(v)]
    return _text(value)


def _floats(value: Any) -> Any:
    """Nested lists of numbers as nested lists of floats."""
    return [_floats(v) for v in value] if isinstance(value, (list, tuple)) else float(value)


def _words(row: Mapping[str, Any], group: str, labels: Any) -> list[dict[str, Any]]:
    """A token-level group's words: text, character offsets and labels; padding (offset -1) dropped."""
    words = []
    for word, (start, end), word_labels in zip(
        row[f"{group}{WORDS_SUFFIX}"], row[f"{group}{OFFSETS_SUFFIX}"], labels, strict=True
    ):
        if int(start) < 0:
            continue
        words.append({"word": _text(word), "start": int(start), "end": int(end), "labels": _labels(word_labels)})
    return words


def build_rest_request(texts: Sequence[str], signature_name: str = "serving_default") -> dict[str, Any]:
    """The JSON body of a REST predict request (row format) for raw texts."""
    texts = check_texts(texts)
    return {"signature_name": signature_name, "instances": [{"text": text} for text in texts]}


def rest_url(base_url: str, model: str, version: int | None = None) -> str:
    """``<base>/v1/models/<model>[/versions/<version>]:predict``."""
    version_part = f"/versions/{int(version)}" if version is not None else ""
    return f"{base_url.rstrip('/')}/v1/models/{model}{version_part}:predict"


def parse_rest_response(body: Mapping[str, Any], with_probabilities: bool = False) -> list[dict[str, Any]]:
    """Label dicts from a REST predict response, in either of TF Serving's formats."""
    if "error" in body:
        raise RuntimeError(f"TF Serving answered with an error: {body['error']}")
    if "predictions" in body:
        rows = body["predictions"]
        if rows and not isinstance(rows[0], Mapping):
            raise ValueError("The response's `predictions` hold bare values; expected one object per text "
                             "with '<group>_labels' keys (is this an mtkeras export's serving_default?).")
    elif "outputs" in body:
        columns = body["outputs"]
        if not isinstance(columns, Mapping):
            raise ValueError("The response's `outputs` is not an object of named outputs.")
        size = len(next(iter(columns.values()))) if columns else 0
        rows = [{name: values[i] for name, values in columns.items()} for i in range(size)]
    else:
        raise ValueError(f"Not a TF Serving predict response: expected 'predictions' or 'outputs', received keys "
                         f"{sorted(body)}.")
    results = []
    for row in rows:
        result = {}
        for name, value in row.items():
            if name.endswith(VALUES_SUFFIX):  # regression: a float, or a list for several targets
                numbers = [float(v) for v in value]
                result[name[: -len(VALUES_SUFFIX)]] = numbers[0] if len(numbers) == 1 else numbers
            elif name.endswith(LABELS_SUFFIX):
                group = name[: -len(LABELS_SUFFIX)]
                if f"{group}{WORDS_SUFFIX}" in row:  # token level: one entry per word
                    result[group] = _words(row, group, value)
                else:
                    result[group] = _labels(value)
        if not result:
            raise ValueError(f"A prediction has no '<group>_labels' or '<group>_values' output; keys: {sorted(row)}.")
        if with_probabilities:
            for name, value in row.items():
                if name.endswith(PROBABILITIES_SUFFIX):
                    result[name] = _floats(value)
        results.append(result)
    return results


class ServingClient:
    """Texts to label dicts through a TF Serving model server (REST, or gRPC with the extra).

    Args:
        url: ``http://host:8501`` for REST, or ``host:8500`` with ``protocol="grpc"``.
        model: the model name in TF Serving's ``models.config``.
        version: a version number, or None for the latest the server has.
        protocol: ``"rest"`` or ``"grpc"``.
        timeout: seconds per request.
    """

    PROTOCOLS = ("rest", "grpc")

    def __init__(self, url: str, model: str, version: int | None = None, protocol: str = "rest",
                 timeout: float = 30.0) -> None:
        if protocol not in self.PROTOCOLS:
            raise ValueError(f"`protocol` must be one of {list(self.PROTOCOLS)}, received {protocol!r}.")
        self.url, self.model, self.version, self.protocol, self.timeout = url, model, version, protocol, timeout

    def predict(self, texts: Sequence[str], with_probabilities: bool = False) -> list[dict[str, Any]]:
        texts = check_texts(texts)
        if not texts:
            return []
        if self.protocol == "grpc":
            return self._predict_grpc(texts, with_probabilities)
        request = urllib.request.Request(
            rest_url(self.url, self.model, self.version),
            data=json.dumps(build_rest_request(texts)).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - user's URL
                body = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            raise RuntimeError(f"TF Serving at {request.full_url} answered HTTP {error.code}: {detail}") from None
        return parse_rest_response(body, with_probabilities)

    def _predict_grpc(self, texts: list[str], with_probabilities: bool) -> list[dict[str, Any]]:
        import grpc

        stub_module = _grpc_modules()
        channel = grpc.insecure_channel(self.url)
        stub = stub_module["prediction_service_pb2_grpc"].PredictionServiceStub(channel)
        response = stub.Predict(build_grpc_request(texts, self.model, self.version), self.timeout)
        return parse_grpc_response(response, with_probabilities)


def _grpc_modules() -> dict[str, Any]:
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError:
        raise ImportError("gRPC needs the optional extra: pip install 'mtkeras[grpc]' "
                          "(tensorflow-serving-api).") from None
    return {"predict_pb2": predict_pb2, "prediction_service_pb2_grpc": prediction_service_pb2_grpc}


def build_grpc_request(texts: Sequence[str], model: str, version: int | None = None,
                       signature_name: str = "serving_default") -> Any:
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` for raw texts."""
    from mtkeras._compat import tf

    request = _grpc_modules()["predict_pb2"].PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(check_texts(texts), dtype=tf.string))
    return request


def parse_grpc_response(response: Any, with_probabilities: bool = False) -> list[dict[str, Any]]:
    """Label dicts from a ``PredictResponse``."""
    from mtkeras._compat import tf

    columns = {name: tf.make_ndarray(proto).tolist() for name, proto in response.outputs.items()}
    return parse_rest_response({"outputs": columns}, with_probabilities)
