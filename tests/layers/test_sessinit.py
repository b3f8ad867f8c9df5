"""SmartInit and friends: name matching, reports, mismatches, file formats and bad files."""
import logging
import os
import pickle
import shutil

import numpy as np
import pytest
import tensorflow as tf

from layers import ChainInit, DictRestore, JustCurrentSession, RestoreReport, SaverRestore, SmartInit
from layers.sessinit import get_checkpoint_path, is_training_name, load_checkpoint_vars, save_checkpoint_vars
from tests.layers._nets import fixture

tfv1 = tf.compat.v1


def _vars(**shapes):
    """Float32 variables named by keyword (``a__W`` -> ``a/W``), initialised to zeros."""
    return {name.replace("__", "/"): tfv1.get_variable(name.replace("__", "/"), shape, initializer=tfv1.zeros_initializer())
            for name, shape in shapes.items()}


def _values(sess, variables):
    return dict(zip(variables, sess.run(list(variables.values())), strict=True))


@pytest.fixture
def ckpt_copy(tmp_path):
    """A writable copy of the resnet_cifar TF checkpoint directory."""
    d = tmp_path / "ckpt"
    shutil.copytree(fixture("resnet_cifar"), d)
    for p in d.iterdir():
        p.chmod(0o644)
    return d


# --------------------------------------------------------------------------------------------
# Name matching and the report
# --------------------------------------------------------------------------------------------

def test_dict_keys_with_and_without_colon_zero_both_match(graph, make_session):
    v = _vars(a__W=[2], b=[3])
    sess = make_session()
    init = SmartInit({"a/W:0": np.array([1.0, 2.0]), "b": np.arange(3.0)})
    assert isinstance(init, DictRestore)
    report = init.init(sess)
    got = _values(sess, v)
    np.testing.assert_array_equal(got["a/W"], [1, 2])
    np.testing.assert_array_equal(got["b"], [0, 1, 2])
    assert sorted(report.restored) == ["a/W", "b"]
    assert report.missing == [] and report.unused == []


def test_report_lists_missing_and_unused_variables(graph, make_session, caplog):
    v = _vars(kept=[2], not_in_file=[2])
    sess = make_session()
    with caplog.at_level(logging.INFO, logger="layers"):
        report = SmartInit({"kept": np.ones(2), "only_in_file:0": np.ones(4)}).init(sess)
    assert report.restored == ["kept"]
    assert report.missing == ["not_in_file"]
    assert report.unused == ["only_in_file"]
    np.testing.assert_array_equal(_values(sess, v)["not_in_file"], [0, 0])   # keeps its initial value
    assert "not_in_file" in caplog.text and "only_in_file" in caplog.text
    assert "not_in_file" in str(report) and "only_in_file" in str(report)


def test_optimizer_slots_and_global_step_are_not_missing(graph, make_session):
    _vars(fc__W=[2], fc__W__Adam=[2], fc__W__Momentum=[2], global_step=[])
    sess = make_session()
    report = SmartInit({"fc/W": np.ones(2), "conv/W/Adam_1": np.ones(2)}).init(sess)
    assert report.missing == []
    assert sorted(report.missing_training_state) == ["fc/W/Adam", "fc/W/Momentum", "global_step"]
    assert report.unused == [] and report.unused_training_state == ["conv/W/Adam_1"]


def test_is_training_name():
    assert is_training_name("a/W/Adam:0") and is_training_name("EMA/loss") and is_training_name("global_step")
    assert not is_training_name("bn/mean/EMA") and not is_training_name("conv/W")


def test_restore_adds_no_ops_and_works_on_a_finalized_graph(graph, make_session):
    _vars(w=[3, 3])
    sess = make_session()
    n_ops = len(graph.get_operations())
    graph.finalize()
    SmartInit({"w": np.eye(3)}).init(sess)
    assert len(graph.get_operations()) == n_ops


# --------------------------------------------------------------------------------------------
# Shapes and dtypes
# --------------------------------------------------------------------------------------------

def test_equal_element_count_is_reshaped_with_a_log_line(graph, make_session, caplog):
    v = _vars(w=[2, 3])
    sess = make_session()
    with caplog.at_level(logging.WARNING, logger="layers"):
        report = SmartInit({"w": np.arange(6.0)}).init(sess)
    np.testing.assert_array_equal(_values(sess, v)["w"], np.arange(6.0).reshape(2, 3))
    assert report.reshaped == ["w"]
    assert "w" in caplog.text and "reshaping" in caplog.text


def test_float64_values_are_cast_to_the_variable_dtype(graph, make_session):
    v = _vars(w=[2])
    sess = make_session()
    report = SmartInit({"w": np.array([0.1, 0.2], np.float64)}).init(sess)
    np.testing.assert_array_equal(_values(sess, v)["w"], np.array([0.1, 0.2], np.float32))
    assert report.cast == ["w"]


def test_integer_widening_is_allowed_but_narrowing_is_not(graph, make_session):
    big = tfv1.get_variable("big", [2], tf.int64, initializer=tfv1.zeros_initializer())
    tfv1.get_variable("small", [2], tf.int32, initializer=tfv1.zeros_initializer())
    sess = make_session()
    SmartInit({"big": np.array([1, 2], np.int32)}).init(sess)
    np.testing.assert_array_equal(sess.run(big), [1, 2])
    with pytest.raises(ValueError, match=r"small: graph shape \(2\) int32, file shape \(2\) int64"):
        SmartInit({"small": np.array([1, 2], np.int64)}).init(sess)


def test_all_mismatches_are_reported_in_one_error(graph, make_session):
    _vars(conv__W=[3, 3, 3, 8], fc__b=[10], ok=[2])
    tfv1.get_variable("steps", [], tf.int32, initializer=tfv1.zeros_initializer())
    sess = make_session()
    bad = {"conv/W:0": np.zeros([3, 3, 3, 4], np.float32), "fc/b": np.zeros([11], np.float32),
           "steps": np.float32(1.0), "ok": np.ones(2, np.float32)}
    with pytest.raises(ValueError) as e:
        SmartInit(bad).init(sess)
    msg = str(e.value)
    assert "3 variable(s) do not match" in msg and "ignore_mismatch=True" in msg
    assert "conv/W: graph shape (3, 3, 3, 8) float32, file shape (3, 3, 3, 4) float32" in msg
    assert "fc/b: graph shape (10) float32, file shape (11) float32" in msg
    assert "steps: graph shape () int32, file shape () float32" in msg
    assert "ok:" not in msg


def test_ignore_mismatch_skips_with_a_log_line(graph, make_session, caplog):
    v = _vars(conv__W=[3], ok=[2])
    sess = make_session()
    with caplog.at_level(logging.WARNING, logger="layers"):
        report = SmartInit({"conv/W": np.ones(4), "ok": np.ones(2)}, ignore_mismatch=True).init(sess)
    assert report.skipped == ["conv/W"] and report.restored == ["ok"]
    np.testing.assert_array_equal(_values(sess, v)["conv/W"], [0, 0, 0])
    assert "conv/W" in caplog.text and "Skipping" in caplog.text


# --------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------

def test_none_and_empty_string_restore_nothing(graph, make_session):
    _vars(w=[1])
    sess = make_session()
    for obj in (None, ""):
        init = SmartInit(obj)
        assert isinstance(init, JustCurrentSession)
        assert init.init(sess).restored == []


def test_list_is_applied_in_order_and_reports_are_merged(graph, make_session):
    v = _vars(a=[1], b=[1])
    sess = make_session()
    init = SmartInit([{"a": [1.0], "b": [1.0]}, None, {"b": [2.0], "extra": [0.0]}])
    assert isinstance(init, ChainInit)
    report = init.init(sess)
    assert _values(sess, v) == {"a": [1.0], "b": [2.0]}
    assert sorted(report.restored) == ["a", "b"] and report.missing == [] and report.unused == ["extra"]


def test_report_merge_counts_a_variable_restored_later_as_restored():
    first = RestoreReport(source="x", restored=["a"], missing=["b"])
    second = RestoreReport(source="y", restored=["b"], missing=["a"])
    merged = first.merged(second)
    assert merged.restored == ["a", "b"] and merged.missing == [] and merged.source == "x + y"


def test_smartinit_rejects_unknown_types():
    with pytest.raises(TypeError, match="SmartInit: expected a path"):
        SmartInit(42)


def test_saverrestore_prefix_and_ignore(graph, make_session, tmp_path):
    v = _vars(tower1__w=[1], tower1__skip=[1])
    sess = make_session()
    save_checkpoint_vars({"w": np.float32([3.0]), "skip": np.float32([4.0])}, str(tmp_path / "m.npz"))
    report = SaverRestore(str(tmp_path / "m.npz"), prefix="tower1", ignore=["tower1/skip"]).init(sess)
    assert _values(sess, v) == {"tower1/w": [3.0], "tower1/skip": [0.0]}
    assert report.restored == ["tower1/w"] and report.unused == ["skip"]


# --------------------------------------------------------------------------------------------
# Files: npz, checkpoints, their path spellings
# --------------------------------------------------------------------------------------------

def test_fixture_npz_and_checkpoint_hold_the_same_values():
    npz = load_checkpoint_vars(fixture("resnet_cifar.npz"))
    ckpt = load_checkpoint_vars(fixture("resnet_cifar"))
    assert len(npz) == 67 and sorted(npz) == sorted(ckpt)
    assert all(not k.endswith(":0") for k in npz)
    for k in npz:
        np.testing.assert_array_equal(npz[k], ckpt[k])


@pytest.mark.parametrize("spelling", ["", "checkpoint", "model-0", "model-0.index", "model-0.data-00000-of-00001"])
def test_checkpoint_path_spellings_resolve_to_the_prefix(spelling):
    base = fixture("resnet_cifar")
    path = os.path.join(base, spelling) if spelling else base
    assert get_checkpoint_path(path) == os.path.join(base, "model-0")


def test_restore_from_npz_and_checkpoint_sets_the_file_values(graph, make_session):
    v = _vars(linear__W=[64, 10], linear__b=[10])
    sess = make_session()
    expected = load_checkpoint_vars(fixture("resnet_cifar.npz"))
    for src in (fixture("resnet_cifar.npz"), fixture("resnet_cifar")):
        sess.run(tfv1.global_variables_initializer())
        report = SmartInit(src).init(sess)
        assert sorted(report.restored) == ["linear/W", "linear/b"] and len(report.unused) == 65
        got = _values(sess, v)
        for k in v:
            np.testing.assert_array_equal(got[k], expected[k])


def test_saved_tf_checkpoint_is_keyed_by_op_names(tmp_path):
    values = {"a/W:0": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.int64(7)}
    save_checkpoint_vars(values, str(tmp_path / "out" / "model-5"))
    reader = tf.train.load_checkpoint(str(tmp_path / "out" / "model-5"))
    assert set(reader.get_variable_to_shape_map()) == {"a/W", "step"}
    loaded = load_checkpoint_vars(tmp_path / "out")     # directory -> newest checkpoint
    np.testing.assert_array_equal(loaded["a/W"], values["a/W:0"])
    assert loaded["step"] == 7 and loaded["step"].dtype == np.int64


def test_saved_npz_keeps_keys_and_loads_without_colon_zero(tmp_path):
    values = {"a/W:0": np.ones((2, 2), np.float32), "b": np.zeros(3, np.float16)}
    save_checkpoint_vars(values, str(tmp_path / "m.npz"))
    with np.load(tmp_path / "m.npz") as z:
        assert sorted(z.files) == ["a/W:0", "b"]
    loaded = load_checkpoint_vars(str(tmp_path / "m.npz"))
    assert sorted(loaded) == ["a/W", "b"] and loaded["b"].dtype == np.float16


# --------------------------------------------------------------------------------------------
# Bad files: clear errors naming the path, and never pickle
# --------------------------------------------------------------------------------------------

@pytest.fixture
def no_pickle(monkeypatch):
    """Make any attempt to unpickle fail loudly."""
    def boom(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)


@pytest.mark.parametrize("name", ["missing.npz", "missing/model-3", "missing_dir/checkpoint"])
def test_nonexistent_path_is_file_not_found_naming_it(tmp_path, name):
    path = str(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=name.split("/")[0]):
        SmartInit(path)


def test_directory_without_checkpoint_state_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no 'checkpoint' state file"):
        SmartInit(str(tmp_path))


def test_checkpoint_state_naming_a_missing_model_is_file_not_found(tmp_path):
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model-9"\n')
    with pytest.raises(FileNotFoundError, match="does not name an existing checkpoint"):
        SmartInit(str(tmp_path / "checkpoint"))


def test_pickled_npy_file_is_refused_without_unpickling(tmp_path, no_pickle):
    path = tmp_path / "model.npy"
    np.save(path, np.array({"conv/W": np.ones(3)}, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError) as e:
        SmartInit(str(path))
    msg = str(e.value)
    assert str(path) in msg and "pickle" in msg and "np.savez" in msg and ".npz" in msg


def test_npz_with_an_object_array_is_refused_without_unpickling(tmp_path, no_pickle):
    path = tmp_path / "model.npz"
    np.savez(path, good=np.ones(2), bad=np.array([{"x": 1}, None], dtype=object))
    with pytest.raises(ValueError, match=r"'bad' is an object array.*refusing to unpickle"):
        SmartInit(str(path))


def test_dict_with_an_object_value_is_refused(no_pickle):
    with pytest.raises(ValueError, match="'w' is an object array"):
        SmartInit({"w": np.array([{"x": 1}, None], dtype=object)})
    with pytest.raises(ValueError, match="'r' is not a numeric array"):
        SmartInit({"r": [np.ones(2), np.ones(3)]})


def test_truncated_npz_is_a_value_error_naming_the_path(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, w=np.arange(1000.0))
    data = good.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.npz: not a readable \.npz"):
        SmartInit(str(bad))


def test_garbage_npz_is_a_value_error(tmp_path):
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(ValueError, match="garbage.npz"):
        SmartInit(str(bad))


def test_corrupt_npz_member_is_a_value_error_at_restore(tmp_path, graph, make_session):
    _vars(w=[100_000])
    path = tmp_path / "flipped.npz"
    np.savez(path, w=np.arange(100_000, dtype=np.float32))   # stored, not compressed
    data = bytearray(path.read_bytes())
    data[-1000:-984] = b"\xff" * 16                          # near the end of the array data
    path.write_bytes(bytes(data))
    init = SmartInit(str(path))                              # the header is intact
    sess = make_session()
    with pytest.raises(ValueError, match="flipped.npz: cannot read arrays"):
        init.init(sess)


def test_truncated_checkpoint_data_is_a_value_error_naming_the_path(ckpt_copy, graph, make_session):
    _vars(conv0__W=[3, 3, 3, 16], linear__W=[64, 10])
    data = ckpt_copy / "model-0.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    sess = make_session()
    with pytest.raises(ValueError, match=r"ckpt/model-0.*truncated or corrupt"):
        SmartInit(str(ckpt_copy)).init(sess)


def test_corrupt_checkpoint_index_is_a_value_error_naming_the_path(ckpt_copy):
    index = ckpt_copy / "model-0.index"
    index.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"ckpt/model-0: not a readable TensorFlow checkpoint"):
        SmartInit(str(ckpt_copy / "model-0"))


def test_npz_content_is_recognised_without_the_extension(tmp_path, graph, make_session):
    v = _vars(w=[2])
    np.savez(tmp_path / "weights.npz", w=np.float32([5, 6]))
    os.rename(tmp_path / "weights.npz", tmp_path / "weights")
    sess = make_session()
    SmartInit(str(tmp_path / "weights")).init(sess)
    np.testing.assert_array_equal(_values(sess, v)["w"], [5, 6])


def test_npy_content_under_another_name_is_refused(tmp_path, no_pickle):
    np.save(tmp_path / "model.npy", np.array({"w": 1}, dtype=object), allow_pickle=True)
    os.rename(tmp_path / "model.npy", tmp_path / "model.bin")
    with pytest.raises(ValueError, match="pickle"):
        SmartInit(str(tmp_path / "model.bin"))


def test_float32_values_restore_into_a_bfloat16_variable(graph, make_session):
    v = tfv1.get_variable("w", [2], tf.bfloat16, initializer=tfv1.zeros_initializer())
    sess = make_session()
    report = SmartInit({"w": np.float32([1.5, -2.0])}).init(sess)
    assert report.cast == ["w"]
    np.testing.assert_array_equal(sess.run(v).astype(np.float32), [1.5, -2.0])
