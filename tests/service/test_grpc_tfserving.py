"""TF Serving's gRPC API (service.grpc.tfserving_api) on the KServe gRPC server's port, through TF Serving's
own client stubs (``tensorflow-serving-api``) and TensorFlow's ``make_tensor_proto``/``make_ndarray``, as a
TF Serving user writes them, against the real app (the harness of test_grpc.py). Answers are compared with
the HTTP TF Serving REST route's and a NumPy reference. Small pure-Python models (tests/service/fakes.py)."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from .fakes import doubler, pixels
from .test_grpc import running

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
from tensorflow.core.example import example_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.apis.get_model_metadata_pb2 import SignatureDefMap  # noqa: E402


class Client:
    def __init__(self, s):
        self.channel = grpc.insecure_channel(s.grpc_url)
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)


@pytest.fixture(scope="module")
def server():
    with running([doubler(), pixels()]) as s:
        s.tfs = Client(s)
        try:
            yield s
        finally:
            s.tfs.channel.close()


def predict_request(model="double", x=None, version=None, label=None, signature=None, name="x"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    if signature is not None:
        request.model_spec.signature_name = signature
    if x is not None:
        request.inputs[name].CopyFrom(tf.make_tensor_proto(x))
    return request


def rpc_error(fn) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value


X = np.array([[1.0, 2.0, 3.0], [-4.5, 0.25, 8.0]], np.float32)


def test_predict_equals_the_rest_answer_and_numpy(server):
    response = server.tfs.predict.Predict(predict_request(x=X), timeout=30)
    y, total = tf.make_ndarray(response.outputs["y"]), tf.make_ndarray(response.outputs["sum"])
    np.testing.assert_array_equal(y, X * 2)
    np.testing.assert_array_equal(total, X.sum(axis=1))
    assert y.dtype == np.float32 and y.shape == (2, 3)
    rest = server.http.post("/v1/models/double:predict", json={"inputs": {"x": X.tolist()}}).json()["outputs"]
    np.testing.assert_array_equal(y, np.array(rest["y"], np.float32))
    np.testing.assert_array_equal(total, np.array(rest["sum"], np.float32))
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == ("double", 1, "serving_default")


def test_predict_typed_fields_output_filter_and_pinned_version(server):
    request = predict_request(version=1, signature="serving_default")
    t = request.inputs["x"]
    t.dtype = tf.float32.as_datatype_enum
    t.tensor_shape.dim.add(size=1)
    t.tensor_shape.dim.add(size=3)
    t.float_val.extend([1.0, 2.0, 3.0])         # typed field, not tensor_content
    request.output_filter.append("y")
    response = server.tfs.predict.Predict(request, timeout=30)
    assert list(response.outputs) == ["y"]
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), [[2.0, 4.0, 6.0]])
    e = rpc_error(lambda: server.tfs.predict.Predict(predict_request(x=X, version=7), timeout=30))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "serving version 1" in e.details()


def test_predict_errors(server):
    cases = [
        (predict_request(x=X, label="stable"), grpc.StatusCode.NOT_FOUND, "has no version label 'stable'"),
        (predict_request(x=X, signature="other"), grpc.StatusCode.INVALID_ARGUMENT, "signature_name"),
        (predict_request("nope", x=X), grpc.StatusCode.NOT_FOUND, "unknown model 'nope'"),
        (predict_request(x=X, name="z"), grpc.StatusCode.INVALID_ARGUMENT, "unknown input 'z'"),
        (predict_request(x=np.ones((2, 4), np.float32)), grpc.StatusCode.INVALID_ARGUMENT, ""),
        (predict_request(x=np.array([[1.0, np.nan, 3.0]], np.float32)), grpc.StatusCode.INVALID_ARGUMENT, ""),
        (predict_request(), grpc.StatusCode.INVALID_ARGUMENT, "inputs"),
    ]
    for request, code, text in cases:
        e = rpc_error(lambda r=request: server.tfs.predict.Predict(r, timeout=30))
        assert e.code() == code and text in e.details(), (request, e.code(), e.details())
    request = predict_request(x=X)
    request.output_filter.append("nope")
    e = rpc_error(lambda: server.tfs.predict.Predict(request, timeout=30))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "output_filter" in e.details()


def test_predict_is_counted(server):
    def count(code):
        return server.registry.get_sample_value("tpserve_requests_total", {
            "model": "double", "route": "grpc:tfserving:predict", "code": code}) or 0
    ok, bad = count("200"), count("400")
    server.tfs.predict.Predict(predict_request(x=X), timeout=30)
    rpc_error(lambda: server.tfs.predict.Predict(predict_request(x=X, signature="other"), timeout=30))
    assert (count("200"), count("400")) == (ok + 1, bad + 1)


def test_classify_pixels_gives_labels_best_first_as_rest(server):
    images = np.array([[[0, 10], [20, 30]], [[250, 240], [230, 255]]], np.uint8)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "pixels"
    for img in images:
        ex = example_pb2.Example()
        ex.features.feature["image"].int64_list.value.extend(img.reshape(-1).tolist())
        request.input.example_list.examples.append(ex)
    response = server.tfs.predict.Classify(request, timeout=30)
    got = [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]
    mean = images.reshape(2, -1).mean(axis=1).astype(np.float32) / 255.0
    assert [[label for label, _ in row] for row in got] == [["a", "b"], ["b", "a"]]
    np.testing.assert_allclose([row[0][1] for row in got], [1 - mean[0], mean[1]], rtol=1e-6)
    rest = server.http.post("/v1/models/pixels:classify", json={"instances": images.tolist(), "top_k": 2}).json()
    assert [[label for label, _ in row] for row in got] == [[label for label, _ in row] for row in rest["results"]]
    np.testing.assert_allclose([[s for _, s in row] for row in got],
                               [[s for _, s in row] for row in rest["results"]], rtol=1e-6)
    ex = request.input.example_list.examples[0]
    ex.features.feature["image"].int64_list.value.append(1)        # 5 values for a 2x2 image
    e = rpc_error(lambda: server.tfs.predict.Classify(request, timeout=30))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "needs 4" in e.details()


def test_get_model_status(server):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "double"
    response = server.tfs.models.GetModelStatus(request, timeout=30)
    [v] = response.model_version_status
    assert v.version == 1 and v.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert v.status.error_code == 0 and v.status.error_message == ""
    rest = server.http.get("/v1/models/double").json()["model_version_status"][0]
    assert (str(v.version), "AVAILABLE") == (rest["version"], rest["state"])
    request.model_spec.version.value = 1
    assert server.tfs.models.GetModelStatus(request, timeout=30).model_version_status[0].version == 1
    request.model_spec.version.value = 2
    e = rpc_error(lambda: server.tfs.models.GetModelStatus(request, timeout=30))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    request.model_spec.name = "nope"
    e = rpc_error(lambda: server.tfs.models.GetModelStatus(request, timeout=30))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_get_model_metadata_signature_def(server):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "double"
    request.metadata_field.append("signature_def")
    response = server.tfs.predict.GetModelMetadata(request, timeout=30)
    assert response.model_spec.name == "double" and response.model_spec.version.value == 1
    sigmap = SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(sigmap)
    assert list(sigmap.signature_def) == ["serving_default"]
    sig = sigmap.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert list(sig.inputs) == ["x"] and sorted(sig.outputs) == ["sum", "y"]
    x = sig.inputs["x"]
    assert (x.name, x.dtype, [d.size for d in x.tensor_shape.dim]) == ("x:0", tf.float32.as_datatype_enum, [-1, 3])
    assert [d.size for d in sig.outputs["sum"].tensor_shape.dim] == [-1]
    rest = server.http.get("/v1/models/double/metadata").json()["metadata"]["signature_def"]["signature_def"]
    assert sorted(rest["serving_default"]["outputs"]) == sorted(sig.outputs)
    del request.metadata_field[:]
    e = rpc_error(lambda: server.tfs.predict.GetModelMetadata(request, timeout=30))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    request.metadata_field.append("signature_def")
    request.model_spec.version_label = "canary"
    e = rpc_error(lambda: server.tfs.predict.GetModelMetadata(request, timeout=30))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "its config sets no 'version_labels'" in e.details()


def test_tensor_codec_round_trips_every_dtype():
    """Our TensorProto <-> NumPy against TensorFlow's own (tensor_content and typed fields)."""
    from service.grpc.tfserving import framework_pb2 as fw
    from service.grpc.tfserving_api import array_to_tensor, tensor_to_array

    for dtype in (np.float32, np.float64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.int64, np.bool_,
                  np.float16, np.uint32, np.uint64):
        a = (np.arange(6).reshape(2, 3) % 2).astype(dtype)
        theirs = tf.make_tensor_proto(a)
        np.testing.assert_array_equal(tensor_to_array(fw.TensorProto.FromString(theirs.SerializeToString()), "t",
                                                      100), a)
        back = tf.make_ndarray(type(theirs).FromString(array_to_tensor(a).SerializeToString()))
        assert back.dtype == a.dtype
        np.testing.assert_array_equal(back, a)
    filled = tf.make_tensor_proto(2.5, shape=[2, 3])               # one value fills the shape
    np.testing.assert_array_equal(tensor_to_array(fw.TensorProto.FromString(filled.SerializeToString()), "t", 100),
                                  np.full((2, 3), 2.5, np.float32))
    half = tf.make_tensor_proto(np.array([[1.5, -2.0]], np.float16))
    half.ClearField("tensor_content")
    half.half_val.extend(np.array([1.5, -2.0], np.float16).view(np.uint16).tolist())
    np.testing.assert_array_equal(tensor_to_array(fw.TensorProto.FromString(half.SerializeToString()), "t", 100),
                                  [[1.5, -2.0]])


def test_classify_takes_an_encoded_image_in_a_bytes_list(server):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2, :2, 0] = 250                       # pixels reads the red channel of the top-left 2x2
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "pixels"
    ex = request.input.example_list.examples.add()
    ex.features.feature["image"].bytes_list.value.append(tf.io.encode_png(rgb).numpy())
    [row] = server.tfs.predict.Classify(request, timeout=30).result.classifications
    assert [c.label for c in row.classes] == ["b", "a"]
    np.testing.assert_allclose(row.classes[0].score, 250 / 255, rtol=1e-6)


def test_the_server_side_imports_no_tensorflow():
    """The front-end processes serve this API: its stubs and codec must not cost a TensorFlow import."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; sys.modules['tensorflow'] = None\n"        # any import of it fails
            "import service.grpc, service.grpc.tfserving_api as t, numpy as np\n"
            "a = np.arange(6, dtype=np.float32).reshape(2, 3)\n"
            "assert (t.tensor_to_array(t.array_to_tensor(a), 'x', 10) == a).all()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).parents[2])
    assert r.returncode == 0, r.stderr[-3000:]
