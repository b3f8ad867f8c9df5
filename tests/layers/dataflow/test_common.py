"""Dataflow sources and transformations against hand-computed expectations (tensorpack 0.11 semantics)."""
import numpy as np
import pytest

from layers.dataflow import (
    BatchData,
    DataFlow,
    DataFromGenerator,
    DataFromIterable,
    DataFromList,
    FakeData,
    FixedSizeData,
    MapData,
    MapDataComponent,
    PrintData,
    RepeatedData,
    RepeatedDataPoint,
    SelectComponent,
    fix_rng_seed,
    get_rng,
)


def _ints(n):
    return DataFromList([[k] for k in range(n)], shuffle=False)


def _run(ds):
    ds.reset_state()
    return list(ds)


def test_batchdata_stacks_arrays_on_a_new_leading_axis_keeping_their_dtype():
    points = [[np.full((2, 3), k, dtype=np.float16), np.int64(k)] for k in range(4)]
    (images, labels), = _run(BatchData(DataFromList(points, shuffle=False), 4))
    np.testing.assert_array_equal(images, np.stack([p[0] for p in points]))
    assert images.dtype == np.float16 and images.shape == (4, 2, 3)
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2, 3]


def test_batchdata_python_numbers_become_int32_and_float32_and_bools_int32_like_tensorpack():
    points = [[1, 0.5, True, "ab"], [2, 1.5, False, "cd"]]
    ints, floats, bools, strs = _run(BatchData(DataFromList(points, shuffle=False), 2))[0]
    assert ints.dtype == np.int32 and ints.tolist() == [1, 2]
    assert floats.dtype == np.float32 and floats.tolist() == [0.5, 1.5]
    # tensorpack checks isinstance(x, int) first, and bool is an int
    assert bools.dtype == np.int32 and bools.tolist() == [1, 0]
    assert strs.dtype.kind == "U" and strs.tolist() == ["ab", "cd"]


def test_batchdata_without_remainder_drops_the_partial_batch():
    ds = BatchData(_ints(10), 4)
    assert len(ds) == 2
    assert [b[0].tolist() for b in _run(ds)] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_batchdata_with_remainder_yields_the_partial_batch_last():
    ds = BatchData(_ints(10), 4, remainder=True)
    assert len(ds) == 3
    assert [b[0].tolist() for b in _run(ds)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_batchdata_remainder_adds_nothing_when_the_size_divides_evenly():
    assert len(BatchData(_ints(8), 4, remainder=True)) == 2
    assert len(_run(BatchData(_ints(8), 4, remainder=True))) == 2


def test_batchdata_use_list_keeps_python_lists():
    points = [[np.zeros(k + 1)] for k in range(3)]  # ragged: cannot be stacked
    (col,), = _run(BatchData(DataFromList(points, shuffle=False), 3, use_list=True))
    assert isinstance(col, list) and [c.shape for c in col] == [(1,), (2,), (3,)]


def test_batchdata_batches_dict_datapoints_per_key():
    points = [{"x": np.array([k, k]), "y": k} for k in range(2)]
    (batch,) = _run(BatchData(DataFromList(points, shuffle=False), 2))
    np.testing.assert_array_equal(batch["x"], [[0, 0], [1, 1]])
    assert batch["y"].dtype == np.int32


def test_batchdata_ragged_arrays_raise_valueerror_naming_the_shapes():
    points = [[np.zeros(2)], [np.zeros(3)]]
    with pytest.raises(ValueError, match=r"shapes \[\(2,\), \(3,\)\]"):
        _run(BatchData(DataFromList(points, shuffle=False), 2))


def test_batchdata_refuses_a_batch_larger_than_the_dataflow_without_remainder():
    with pytest.raises(ValueError, match="batch_size=5 is larger than the dataflow"):
        BatchData(_ints(4), 5)
    assert len(BatchData(_ints(4), 5, remainder=True)) == 1


def test_batchdata_refuses_a_non_positive_batch_size():
    with pytest.raises(ValueError, match="positive integer"):
        BatchData(_ints(4), 0)


def test_mapdata_applies_func_and_drops_none_results():
    ds = MapData(_ints(6), lambda dp: None if dp[0] % 2 else [dp[0] * 10])
    assert _run(ds) == [[0], [20], [40]]


def test_mapdatacomponent_maps_only_the_given_index_and_leaves_the_source_untouched():
    source = [(k, k + 100) for k in range(3)]
    ds = MapDataComponent(DataFromList(source, shuffle=False), lambda v: -v, index=1)
    assert _run(ds) == [[0, -100], [1, -101], [2, -102]]
    assert source == [(0, 100), (1, 101), (2, 102)]


def test_mapdatacomponent_accepts_a_dict_key_and_drops_on_none():
    ds = MapDataComponent(DataFromList([{"a": 1}, {"a": 2}], shuffle=False), lambda v: v if v > 1 else None, "a")
    assert _run(ds) == [{"a": 2}]


def test_repeateddata_repeats_the_whole_pass_num_times():
    ds = RepeatedData(_ints(3), 2)
    assert len(ds) == 6
    assert [dp[0] for dp in _run(ds)] == [0, 1, 2, 0, 1, 2]


def test_repeateddata_minus_one_is_endless_and_has_no_length():
    ds = RepeatedData(_ints(2), -1)
    ds.reset_state()
    it = iter(ds)
    assert [next(it)[0] for _ in range(5)] == [0, 1, 0, 1, 0]
    with pytest.raises(NotImplementedError):
        len(ds)


def test_fixedsizedata_keep_state_continues_where_the_last_pass_stopped():
    ds = FixedSizeData(_ints(5), 3)
    ds.reset_state()
    assert len(ds) == 3
    assert [[dp[0] for dp in ds] for _ in range(3)] == [[0, 1, 2], [3, 4, 0], [1, 2, 3]]


def test_fixedsizedata_without_keep_state_restarts_every_pass():
    ds = FixedSizeData(_ints(5), 6, keep_state=False)
    ds.reset_state()
    assert [[dp[0] for dp in ds] for _ in range(2)] == [[0, 1, 2, 3, 4, 0]] * 2


def test_selectcomponent_reorders_components():
    assert _run(SelectComponent(DataFromList([[1, 2, 3]], shuffle=False), [2, 0])) == [[3, 1]]


def test_printdata_prints_the_first_datapoints_and_passes_everything_through(capsys):
    points = [[np.arange(6, dtype=np.int32).reshape(2, 3), 1.5, [1, 2]] for _ in range(3)]
    out = _run(PrintData(DataFromList(points, shuffle=False), num=2, name="train"))
    assert len(out) == 3
    printed = capsys.readouterr().out
    assert "Contents of DataFlow (train):" in printed
    assert printed.count("with 3 components") == 2
    assert "0: ndarray:int32 of shape (2, 3) in range [0, 5]" in printed
    assert "1: float with value 1.5" in printed
    assert "2: list of len 2" in printed


def test_datafromlist_shuffles_with_its_rng_and_needs_reset_state():
    ds = DataFromList([[k] for k in range(8)])
    with pytest.raises(RuntimeError, match="reset_state"):
        list(ds)
    ds.reset_state()
    ds.rng = np.random.RandomState(3)
    expected = np.arange(8)
    np.random.RandomState(3).shuffle(expected)
    assert [dp[0] for dp in ds] == expected.tolist()


def test_fix_rng_seed_makes_get_rng_reproducible():
    fix_rng_seed(123)
    try:
        assert get_rng(object()).randint(1 << 30) == np.random.RandomState(123).randint(1 << 30)
    finally:
        fix_rng_seed(None)
    assert get_rng(object()).randint(1 << 30, size=4).tolist() != get_rng(object()).randint(1 << 30, size=4).tolist()


def test_datafromgenerator_calls_a_callable_every_pass_and_has_no_length():
    ds = DataFromGenerator(lambda: ([k] for k in range(3)))
    ds.reset_state()
    assert [list(ds), list(ds)] == [[[0], [1], [2]]] * 2
    with pytest.raises(NotImplementedError):
        len(ds)


def test_old_style_get_data_and_size_methods_still_define_a_dataflow():
    class Old(DataFlow):
        def get_data(self):
            yield from ([k] for k in range(3))

        def size(self):
            return 3

    ds = BatchData(Old(), 3)
    assert len(ds) == 1 and _run(ds)[0][0].tolist() == [0, 1, 2]


def test_repeateddatapoint_repeats_each_datapoint_in_place():
    ds = RepeatedDataPoint(_ints(2), 3)
    assert len(ds) == 6 and [dp[0] for dp in _run(ds)] == [0, 0, 0, 1, 1, 1]


def test_fakedata_draws_the_given_shapes_dtypes_and_domains():
    ds = FakeData([[2, 3], [1]], size=4, dtype=["float32", "int32"], domain=[(5, 6), (0, 10)])
    points = _run(ds)
    assert len(points) == 4
    assert all(p[0].shape == (2, 3) and p[0].dtype == np.float32 and 5 <= p[0].min() <= p[0].max() < 6
               for p in points)
    assert all(p[1].dtype == np.int32 and 0 <= p[1][0] < 10 for p in points)


def test_fakedata_with_a_scalar_shape_gives_0d_arrays():
    (label,) = _run(FakeData([[]], size=1, dtype="int32", domain=(3, 4)))[0]
    assert isinstance(label, np.ndarray) and label.shape == () and label.dtype == np.int32 and label == 3


def test_datafromiterable_knows_the_length_of_a_sized_iterable():
    ds = DataFromIterable([k] for k in range(2))
    with pytest.raises(NotImplementedError):
        len(ds)
    assert len(DataFromIterable([[1], [2]])) == 2
