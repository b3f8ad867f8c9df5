"""PredictConfig, OfflinePredictor and MultiDevicePredictor: reference outputs, input checks, strictness,
threads and device replicas."""
import threading

import numpy as np
import pytest
import tensorflow as tf

from layers import (
    FullyConnected,
    MultiDevicePredictor,
    OfflinePredictor,
    PredictConfig,
    SaverRestore,
)
from tests.layers._nets import CifarResNet, MnistLinearWrap, TinyNet, fixture, session_config

tfv1 = tf.compat.v1


@pytest.fixture(scope="module")
def tiny_weights():
    rs = np.random.RandomState(0)
    shapes = {"conv/W": (3, 3, 2, 3), "conv/b": (3,), "bn/beta": (3,), "bn/gamma": (3,), "bn/mean/EMA": (3,),
              "bn/variance/EMA": (3,), "fc/W": (48, 3), "fc/b": (3,)}
    return {k: rs.uniform(0.5, 1.5, s).astype(np.float32) for k, s in shapes.items()}


@pytest.fixture(scope="module")
def tiny(tiny_weights):
    config = PredictConfig(model=TinyNet(), output_names=["fc/output", "bn/output"], session_init=tiny_weights,
                           session_config=session_config())
    with OfflinePredictor(config) as pred:
        yield pred


def _tiny_reference(w, x):
    """NumPy TinyNet: 3x3 SAME conv + relu -> inference BatchNorm -> FC."""
    xp = np.pad(x.astype(np.float64), [(0, 0), (1, 1), (1, 1), (0, 0)])
    conv = sum(xp[:, i:i + 4, j:j + 4, :] @ w["conv/W"][i, j] for i in range(3) for j in range(3)) + w["conv/b"]
    conv = np.maximum(conv, 0)
    bn = (conv - w["bn/mean/EMA"]) / np.sqrt(w["bn/variance/EMA"] + 1e-5) * w["bn/gamma"] + w["bn/beta"]
    return bn.reshape(len(x), -1) @ w["fc/W"] + w["fc/b"], bn


# --------------------------------------------------------------------------------------------
# Reference outputs of the tensorpack fixtures
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, name, source, outputs", [
    (CifarResNet, "resnet_cifar", "resnet_cifar.npz", ["linear/output", "output"]),
    (CifarResNet, "resnet_cifar", "resnet_cifar", ["linear/output", "output"]),
    (CifarResNet, "resnet_cifar", "resnet_cifar/model-0.index", ["linear/output:0"]),
    (MnistLinearWrap, "mnist_linearwrap", "mnist_linearwrap.npz", ["fc1/output", "fc0/output"]),
])
def test_predictor_reproduces_tensorpack_reference_outputs(model, name, source, outputs):
    io = np.load(fixture(name + ".io.npz"))
    config = PredictConfig(model=model(), output_names=outputs, session_init=fixture(source),
                           session_config=session_config())
    with OfflinePredictor(config) as pred:
        assert pred.restore_report.missing == [] and pred.restore_report.unused == []
        got = pred(io["input"])
    for name_, value in zip(outputs, got, strict=True):
        ref = io[name_ if name_.endswith(":0") else name_ + ":0"]
        np.testing.assert_allclose(value, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


# --------------------------------------------------------------------------------------------
# Calling
# --------------------------------------------------------------------------------------------

def test_call_returns_outputs_in_order_and_matches_numpy(tiny, tiny_weights, rng):
    x = rng.standard_normal((6, 4, 4, 2)).astype(np.float32)
    logits, bn = tiny(x)
    ref_logits, ref_bn = _tiny_reference(tiny_weights, x)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4)
    np.testing.assert_allclose(bn, ref_bn, rtol=1e-4, atol=1e-5)


def test_predict_batch_maps_names_to_arrays(tiny, rng):
    x = rng.standard_normal((2, 4, 4, 2)).astype(np.float32)
    out = tiny.predict_batch({"input": x})
    assert list(out) == ["fc/output", "bn/output"]
    np.testing.assert_array_equal(out["fc/output"], tiny(x)[0])
    with pytest.raises(ValueError, match=r"missing \['input'\], unexpected \['image'\]"):
        tiny.predict_batch({"image": x})


def test_attributes(tiny):
    assert tiny.input_names == ["input"] and tiny.output_names == ["fc/output", "bn/output"]
    assert tiny.input_specs == [tf.TensorSpec([None, 4, 4, 2], tf.float32, "input")]
    assert tiny.graph.finalized and tiny.session.graph is tiny.graph
    assert [t.name for t in tiny.output_tensors] == ["fc/output:0", "bn/output:0"]


def test_unknown_batch_size_is_accepted(tiny, rng):
    for n in (1, 3, 17):
        assert tiny(rng.standard_normal((n, 4, 4, 2)).astype(np.float32))[0].shape == (n, 3)


def test_wrong_number_of_inputs_is_an_error(tiny):
    x = np.zeros((1, 4, 4, 2), np.float32)
    with pytest.raises(ValueError, match=r"expected 1 input\(s\) \['input'\], got 2"):
        tiny(x, x)
    with pytest.raises(ValueError, match="got 0"):
        tiny()


@pytest.mark.parametrize("shape, expected", [
    ((1, 4, 4, 3), r"input 'input': expected shape \[None, 4, 4, 2\], got shape \[1, 4, 4, 3\]"),
    ((4, 4, 2), r"input 'input': expected shape \[None, 4, 4, 2\] \(rank 4\), got shape \[4, 4, 2\]"),
])
def test_wrong_input_shape_is_an_error_naming_input_expected_and_received(tiny, shape, expected):
    with pytest.raises(ValueError, match=expected):
        tiny(np.zeros(shape, np.float32))


@pytest.mark.parametrize("dtype", [np.int64, np.complex64, np.uint64])
def test_unsafe_input_dtype_is_an_error_naming_input_expected_and_received(tiny, dtype):
    x = np.zeros((1, 4, 4, 2), dtype)
    with pytest.raises(ValueError, match=rf"input 'input': expected dtype float32, got {np.dtype(dtype).name}"):
        tiny(x)


def test_safely_castable_inputs_are_converted(tiny, rng):
    x = rng.uniform(0, 255, (2, 4, 4, 2)).round()
    expected = tiny(x.astype(np.float32))[0]
    np.testing.assert_array_equal(tiny(x.astype(np.uint8))[0], expected)
    np.testing.assert_array_equal(tiny(x)[0], expected)            # float64: narrowed to float32
    np.testing.assert_array_equal(tiny(x.tolist())[0], expected)   # nested lists of floats


def test_concurrent_calls_from_8_threads_equal_serial_results(tiny, rng):
    inputs = [rng.standard_normal((int(rng.integers(1, 9)), 4, 4, 2)).astype(np.float32) for _ in range(50)]
    serial = [tiny(x) for x in inputs]
    results = [[None] * len(inputs) for _ in range(8)]
    errors = []
    start = threading.Barrier(8)

    def worker(t):
        try:
            start.wait()
            for i in range(len(inputs)):
                j = (i + 7 * t) % len(inputs)   # threads run different inputs at the same time
                results[t][j] = tiny(inputs[j])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    for t in range(8):
        for got, want in zip(results[t], serial, strict=True):
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)


def test_close_is_idempotent(tiny_weights):
    pred = OfflinePredictor(PredictConfig(model=TinyNet(), output_names=["fc/output"], session_init=tiny_weights))
    pred.close()
    pred.close()
    with pytest.raises(RuntimeError):
        pred(np.zeros((1, 4, 4, 2), np.float32))


# --------------------------------------------------------------------------------------------
# Strictness and configuration
# --------------------------------------------------------------------------------------------

def test_strict_mode_names_variables_the_session_init_did_not_restore(tiny_weights):
    partial = {k: v for k, v in tiny_weights.items() if not k.startswith("bn/")}
    config = PredictConfig(model=TinyNet(), output_names=["fc/output"], session_init=partial)
    with pytest.raises(ValueError) as e:
        OfflinePredictor(config)
    msg = str(e.value)
    assert "4 model variable(s) were not restored" in msg and "strict=False" in msg
    for name in ("bn/beta", "bn/gamma", "bn/mean/EMA", "bn/variance/EMA"):
        assert name in msg


def test_strict_mode_does_not_require_training_state(tiny_weights):
    def tower(x):
        tfv1.train.get_or_create_global_step()
        return TinyNet().build_graph(x)

    config = PredictConfig(tower_func=tower, input_signature=TinyNet().inputs(), output_names=["fc/output"],
                           session_init=tiny_weights)
    with OfflinePredictor(config) as pred:
        assert pred.restore_report.missing_training_state == ["global_step"]


def test_strict_false_runs_with_initial_values():
    config = PredictConfig(model=TinyNet(), output_names=["bn/output"], strict=False)
    with OfflinePredictor(config) as pred:
        assert pred.restore_report.restored == []
        assert pred(np.zeros((1, 4, 4, 2), np.float32))[0].shape == (1, 4, 4, 3)


def test_list_session_init_restores_in_order(tiny_weights):
    later = dict(tiny_weights, **{"fc/b": np.full(3, 100.0, np.float32)})
    config = PredictConfig(model=TinyNet(), output_names=["fc/b"], session_init=[tiny_weights, {"fc/b": later["fc/b"]}])
    with OfflinePredictor(config) as pred:
        np.testing.assert_array_equal(pred(np.zeros((1, 4, 4, 2), np.float32))[0], later["fc/b"])


def test_tower_func_and_input_signature_instead_of_a_model():
    def tower(x):
        return FullyConnected("fc", x, 2, kernel_initializer=tfv1.ones_initializer())

    config = PredictConfig(tower_func=tower, input_signature=[tf.TensorSpec([None, 3], tf.float32, "x")],
                           output_names=["fc/output"], strict=False)
    with OfflinePredictor(config) as pred:
        np.testing.assert_array_equal(pred(np.ones((1, 3), np.float32))[0], [[3.0, 3.0]])


def test_unknown_output_name_is_an_error_with_suggestions():
    config = PredictConfig(model=TinyNet(), output_names=["fc/outptu"], strict=False)
    with pytest.raises(ValueError, match=r"output name 'fc/outptu' is not a tensor.*fc/output"):
        OfflinePredictor(config)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of model= or tower_func="),
    ({"model": TinyNet(), "tower_func": lambda x: x}, "exactly one of"),
    ({"model": TinyNet(), "output_names": "fc/output"}, "output_names must be a non-empty list"),
    ({"model": TinyNet(), "output_names": []}, "output_names must be a non-empty list"),
    ({"model": TinyNet(), "output_names": ["a"], "intra_op_threads": -1}, "intra_op_threads must be None or an int"),
    ({"tower_func": lambda x: x, "output_names": ["a"]}, "tower_func needs input_signature"),
])
def test_config_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PredictConfig(**kwargs)


def test_session_uses_all_cores_by_default_and_threads_are_configurable():
    default = PredictConfig(model=TinyNet(), output_names=["fc/output"]).make_session_config()
    assert default.intra_op_parallelism_threads == 0 and default.inter_op_parallelism_threads == 0
    custom = PredictConfig(model=TinyNet(), output_names=["fc/output"], session_config=session_config(),
                           intra_op_threads=1).make_session_config()
    assert custom.intra_op_parallelism_threads == 1 and custom.inter_op_parallelism_threads == 2


def test_session_init_accepts_a_path(tiny_weights, tmp_path):
    np.savez(tmp_path / "w.npz", **tiny_weights)
    config = PredictConfig(model=TinyNet(), output_names=["fc/W"], session_init=str(tmp_path / "w.npz"))
    assert isinstance(config.session_init, SaverRestore)
    with OfflinePredictor(config) as pred:
        np.testing.assert_array_equal(pred(np.zeros((1, 4, 4, 2), np.float32))[0], tiny_weights["fc/W"])


# --------------------------------------------------------------------------------------------
# MultiDevicePredictor
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_cpu(tiny_weights):
    cfg = tfv1.ConfigProto(device_count={"CPU": 2}, intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
    config = PredictConfig(model=TinyNet(), output_names=["fc/output"], session_init=tiny_weights,
                           session_config=cfg)
    with MultiDevicePredictor(config, devices=["/cpu:0", "/cpu:1"]) as pred:
        yield pred


def test_replicas_give_the_same_outputs_as_a_single_predictor(two_cpu, tiny, rng):
    x = rng.standard_normal((5, 4, 4, 2)).astype(np.float32)
    expected = tiny(x)[0]
    assert [r.device for r in two_cpu.replicas] == ["/cpu:0", "/cpu:1"]
    for replica in two_cpu.replicas:
        np.testing.assert_allclose(replica(x)[0], expected, rtol=1e-6)
        np.testing.assert_allclose(replica.predict_batch({"input": x})["fc/output"], expected, rtol=1e-6)
    np.testing.assert_allclose(two_cpu(x)[0], expected, rtol=1e-6)


def test_replica_ops_are_placed_on_their_device_and_variables_are_shared(two_cpu):
    g = two_cpu.graph
    for i, device in enumerate(["/device:CPU:0", "/device:CPU:1"]):
        # variable reads are colocated with the (shared) variables; everything else is the replica's
        ops = [op for op in g.get_operations() if op.name.startswith(f"replica{i}/") and op.type != "ReadVariableOp"]
        assert len(ops) > 10
        assert {op.name: op.device for op in ops if op.device != device} == {}
        assert f"replica{i}/input:0" == two_cpu.replicas[i].input_tensors[0].name
    with g.as_default():
        names = sorted(v.op.name for v in tfv1.global_variables())
    assert len(names) == 8 and not any(n.startswith("replica") for n in names)


def test_replica_runs_execute_on_their_device(two_cpu):
    x = np.ones((1, 4, 4, 2), np.float32)
    replica = two_cpu.replicas[1]
    meta = tfv1.RunMetadata()
    two_cpu.session.run(replica.output_tensors, {replica.input_tensors[0]: x},
                        options=tfv1.RunOptions(output_partition_graphs=True), run_metadata=meta)
    placed = {node.name: node.device for pg in meta.partition_graphs for node in pg.node
              if node.op not in ("ReadVariableOp", "_Send", "_Recv")}   # reads run where the variables live
    compute = {n: d for n, d in placed.items() if n.startswith("replica1/")}
    assert "replica1/conv/Relu" in compute and "replica1/fc/output" in compute   # (grappler fuses some ops)
    assert {n: d for n, d in compute.items() if not d.endswith("/device:CPU:1")} == {}


def test_replicas_run_concurrently_from_their_own_threads(two_cpu, rng):
    inputs = [rng.standard_normal((3, 4, 4, 2)).astype(np.float32) for _ in range(20)]
    expected = [two_cpu.replicas[0](x)[0] for x in inputs]
    out = {}

    def work(r):
        out[r.index] = [r(x)[0] for x in inputs]

    threads = [threading.Thread(target=work, args=(r,)) for r in two_cpu.replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in (0, 1):
        for got, want in zip(out[i], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6)


def test_unavailable_device_is_an_error(tiny_weights):
    config = PredictConfig(model=TinyNet(), output_names=["fc/output"], session_init=tiny_weights,
                           session_config=tfv1.ConfigProto(device_count={"CPU": 1}))
    with pytest.raises(ValueError, match=r"device\(s\) \['/cpu:1'\] not available in the session \(it has \['CPU:0'"):
        MultiDevicePredictor(config, devices=["/cpu:0", "/cpu:1"])


def test_extra_cpu_devices_are_created_when_the_config_does_not_set_them(tiny_weights, rng):
    config = PredictConfig(model=TinyNet(), output_names=["fc/output"], session_init=tiny_weights,
                           intra_op_threads=1, inter_op_threads=1)
    with MultiDevicePredictor(config, devices=["/cpu:0", "/cpu:1"]) as pred:
        x = rng.standard_normal((2, 4, 4, 2)).astype(np.float32)
        np.testing.assert_allclose(pred.replicas[1](x)[0], pred.replicas[0](x)[0], rtol=1e-6)


def test_duplicate_devices_are_an_error(tiny_weights):
    config = PredictConfig(model=TinyNet(), output_names=["fc/output"], session_init=tiny_weights)
    with pytest.raises(ValueError, match="devices must be distinct"):
        MultiDevicePredictor(config, devices=["/cpu:0", "/device:CPU:0"])


def test_default_devices_without_gpus_is_one_cpu_replica(tiny_weights):
    config = PredictConfig(model=TinyNet(), output_names=["fc/output"], session_init=tiny_weights,
                           session_config=session_config())
    with MultiDevicePredictor(config) as pred:
        expected = ["/cpu:0"] if not tf.config.list_physical_devices("GPU") else None
        if expected:
            assert pred.devices == expected and len(pred.replicas) == 1
        assert pred(np.zeros((1, 4, 4, 2), np.float32))[0].shape == (1, 3)
