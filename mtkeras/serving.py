"""A small TF Serving client: texts in, label dicts out, over REST (standard library) or gRPC.

It imports no TensorFlow, tf_keras or transformers: ``pip install mtkeras`` (without the
``[tf]`` extra) is enough for a client service; gRPC needs ``pip install 'mtkeras[grpc]'``.

Answers are decoded as the export's spec says, group by group, each by its kind
(:meth:`mtkeras.kinds.GroupKind.read_served`), never guessed from output names: give the
client the export (its version folder, or ``assets.extra/mtkeras.json``), a ``spec.json``, a
:class:`~mtkeras.TaskSpec`, or the metadata dict.

REST follows TF Serving's documented predict API
(``POST /v1/models/<name>[/versions/<v>]:predict``): the request is
``{"signature_name": ..., "instances": [{"text": ...}, ...]}`` (row format) and
the response ``{"predictions": [{"<group>_labels": ..., ...}, ...]}``; the columnar
form (``"inputs"`` -> ``"outputs"``) is read too.

Example:
    >>> client = ServingClient("http://localhost:8501", "debtags", spec="saved_models/debtags/1")
    >>> client.predict(["GNU image manipulation program"])
    [{'section': 'graphics', 'use': ['editing'], ...}]
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from mtkeras._checks import check_option, check_texts, check_version
from mtkeras.kinds.base import floats
from mtkeras.spec import TaskSpec

#: Where an export keeps its metadata (the spec is inside it).
METADATA_FILE = os.path.join("assets.extra", "mtkeras.json")


def load_client_spec(source: Any) -> TaskSpec:
    """The spec a client decodes with, from a TaskSpec, an export's metadata dict, a spec dict, or a path
    (an export version folder, its ``assets.extra/mtkeras.json``, a model folder or a ``spec.json``)."""
    if isinstance(source, TaskSpec):
        return source
    if isinstance(source, Mapping):
        return TaskSpec.from_dict(source["spec"] if source.get("format") == "mtkeras-export" else source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"`spec` must be a TaskSpec, an export's metadata or spec dict, or the path of an export, "
            f"mtkeras.json or spec.json; received {source!r:.80} ({type(source).__name__})."
        )
    path = os.fspath(source)
    if os.path.isdir(path):
        candidates = [os.path.join(path, METADATA_FILE), os.path.join(path, "spec.json")]
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            raise FileNotFoundError(f"{path!r} holds neither {METADATA_FILE} (an export) nor spec.json (a model).")
        path = found
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
    try:
        return load_client_spec(data)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{path}: not an mtkeras spec or export metadata ({error}).") from None


def build_rest_request(texts: Sequence[str], signature_name: str = "serving_default") -> dict[str, Any]:
    """The JSON body of a REST predict request (row format) for raw texts."""
    texts = check_texts(texts)
    return {"signature_name": signature_name, "instances": [{"text": text} for text in texts]}


def rest_url(base_url: str, model: str, version: int | None = None) -> str:
    """``<base>/v1/models/<model>[/versions/<version>]:predict``."""
    version_part = f"/versions/{int(version)}" if version is not None else ""
    return f"{base_url.rstrip('/')}/v1/models/{model}{version_part}:predict"


def parse_rest_response(body: Mapping[str, Any], spec: Any, with_probabilities: bool = False) -> list[dict]:
    """Answers from a REST predict response (either of TF Serving's formats), decoded as ``spec`` says
    (anything :func:`load_client_spec` takes)."""
    spec = load_client_spec(spec)
    if "error" in body:
        raise RuntimeError(f"TF Serving answered with an error: {body['error']}")
    if "predictions" in body:
        rows = body["predictions"]
        if rows and not isinstance(rows[0], Mapping):
            raise ValueError("The response's `predictions` hold bare values; expected one object per text "
                             "with '<group>_<output>' keys (is this an mtkeras export's serving_default?).")
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
        result = {group.name: group.rules.read_served(row) for group in spec.groups}
        if with_probabilities:
            for group in spec.groups:
                if group.rules.has_probabilities:
                    name = f"{group.name}_probabilities"
                    result[name] = floats(group.rules.served(row, "probabilities"))
        results.append(result)
    return results


class ServingClient:
    """Texts to label dicts through a TF Serving model server (REST, or gRPC with the extra).

    Args:
        url: ``http://host:8501`` for REST, or ``host:8500`` with ``protocol="grpc"``.
        model: the model name in TF Serving's ``models.config``.
        spec: what answers are decoded with: the export's version folder (or its
            ``assets.extra/mtkeras.json``), a ``spec.json``, a TaskSpec or the metadata dict.
        version: a version number, or None for the latest the server has.
        protocol: ``"rest"`` or ``"grpc"``.
        timeout: seconds per request.
    """

    PROTOCOLS = ("rest", "grpc")

    def __init__(self, url: str, model: str, spec: Any, version: int | None = None, protocol: str = "rest",
                 timeout: float = 30.0) -> None:
        check_option(protocol, "protocol", self.PROTOCOLS)
        if version is not None:
            check_version(version)
        scheme = isinstance(url, str) and url.startswith(("http://", "https://"))
        if not isinstance(url, str) or not url or scheme != (protocol == "rest"):
            wanted = "http://host:8501 for REST" if protocol == "rest" else "host:8500 (no scheme) for gRPC"
            raise ValueError(f"ServingClient `url` must be {wanted}, received {url!r}.")
        self.spec = load_client_spec(spec)
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
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:  # no answer at all
            reason = getattr(error, "reason", None) or error
            raise ConnectionError(f"No answer from TF Serving at {request.full_url} (`url` {self.url!r}, timeout "
                                  f"{self.timeout:g} s): {reason}.") from None
        return parse_rest_response(body, self.spec, with_probabilities)

    def _predict_grpc(self, texts: list[str], with_probabilities: bool) -> list[dict[str, Any]]:
        import grpc

        stub_module = _grpc_modules()
        channel = grpc.insecure_channel(self.url)
        stub = stub_module["prediction_service_pb2_grpc"].PredictionServiceStub(channel)
        response = stub.Predict(build_grpc_request(texts, self.model, self.version), self.timeout)
        return parse_grpc_response(response, self.spec, with_probabilities)


def _grpc_modules() -> dict[str, Any]:
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError:
        raise ImportError("gRPC needs the optional extra: pip install 'mtkeras[grpc]' "
                          "(tensorflow-serving-api).") from None
    return {"predict_pb2": predict_pb2, "prediction_service_pb2_grpc": prediction_service_pb2_grpc}


def _tensorflow() -> Any:
    """TensorFlow for gRPC only: tensorflow-serving-api's protos import it anyway."""
    import tensorflow as tf

    return tf


def build_grpc_request(texts: Sequence[str], model: str, version: int | None = None,
                       signature_name: str = "serving_default") -> Any:
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` for raw texts."""
    texts = check_texts(texts)
    request = _grpc_modules()["predict_pb2"].PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    tf = _tensorflow()
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts, dtype=tf.string))
    return request


def parse_grpc_response(response: Any, spec: Any, with_probabilities: bool = False) -> list[dict[str, Any]]:
    """Answers from a ``PredictResponse``, decoded as ``spec`` says."""
    tf = _tensorflow()
    columns = {name: tf.make_ndarray(proto).tolist() for name, proto in response.outputs.items()}
    return parse_rest_response({"outputs": columns}, spec, with_probabilities)
