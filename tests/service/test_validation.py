"""JSON bodies: the budget (every valid request fits it; a body that could never be valid is refused from a
byte count, before any Python object is built) and no coercion of strings or booleans in any row."""
from __future__ import annotations

import numpy as np
import orjson
import pytest

from service.errors import InvalidRequest, PayloadTooLarge
from service.model import TensorSpec
from service.validation import JsonBudget, check_json_budget, json_budget, to_batch

F32 = np.dtype("float32")


def spec(name, *shape):
    return TensorSpec(name, F32, tuple(shape))


def test_budget_by_hand_for_a_vector_and_an_image_input():
    # (3,): a row is one list + the TF Serving instance object = 2 containers, 3 values (+1 key)
    assert json_budget([spec("x", 3)], 4) == JsonBudget(4 * 2 + 64, 4 * (3 + 1) + 256)
    # (2, 3, 1): lists per row 1 + 2 + 2*3 = 9, plus the instance object = 10; 6 values (+1 key)
    assert json_budget([spec("img", 2, 3, 1)], 5) == JsonBudget(5 * 10 + 64, 5 * (6 + 1) + 256)


def test_an_unknown_dimension_means_no_budget():
    assert json_budget([spec("x", None, 3)], 8) is None
    check_json_budget(b"[[[[[[[[[[]]]]]]]]]]" * 100, None, "m")       # nothing to check against


def _largest_valid_bodies(specs, rows):
    data = {s.name: np.zeros((rows, *s.shape), np.float32) for s in specs}
    yield {"inputs": {k: v.tolist() for k, v in data.items()}, "outputs": ["y"], "timeout_ms": 5}      # /predict
    yield {"instances": [{k: v[i].tolist() for k, v in data.items()} for i in range(rows)]}          # TF Serving rows
    yield {"inputs": [{"name": k, "shape": list(v.shape), "datatype": "FP32", "data": v.tolist(),       # v2 nested
                       "parameters": {"binary_data_size": 0}} for k, v in data.items()],
           "outputs": [{"name": "y", "parameters": {"binary_data": False}}], "parameters": {}}
    if len(specs) == 1:
        yield {"instances": data[specs[0].name].tolist()}                                             # bare rows


@pytest.mark.parametrize("shapes", [[(3,)], [(8, 8, 1)], [(2, 3, 4, 5)], [(4,), (2, 2)], [(1,)]])
def test_every_valid_request_at_the_row_limit_fits_the_budget(shapes):
    specs = [spec(f"in{i}", *s) for i, s in enumerate(shapes)]
    budget = json_budget(specs, 16)
    for body in _largest_valid_bodies(specs, 16):
        check_json_budget(orjson.dumps(body), budget, "m")


def test_a_body_of_empty_lists_is_refused_before_parsing():
    budget = json_budget([spec("x", 8, 8, 1)], 4096)     # 4096 * (1 + 8 + 64 + 1) + 64 = 303168
    body = b'{"inputs": [' + b"[]," * 1_000_000 + b"[]]}"
    with pytest.raises(PayloadTooLarge, match=r"1000003 JSON lists/objects.*at most 303168") as e:
        check_json_budget(body, budget, "digits")
    assert e.value.status == 413


def test_too_many_flat_values_are_refused():
    budget = json_budget([spec("x", 3)], 10)        # 10 rows of 3 values
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [1000, 3], "datatype": "FP32", "data": [0] * 3000}]})
    with pytest.raises(PayloadTooLarge, match="JSON values"):
        check_json_budget(body, budget, "m")


# ------------------------------------------------------------------ no coercion, in any row

@pytest.mark.parametrize(("rows", "words"), [
    ([[1.0, 2.0, 3.0], [4.0, "5", 6.0]], "non-numeric value '5' (str)"),     # NumPy would make 5.0 of it
    ([[1.0, 2.0, 3.0], [4.0, 5.0, True]], "the boolean true"),               # ... and 1.0 of this
    ([[True, False, True]], "the boolean true"),
    ([["1", "2", "3"]], "non-numeric value '1'"),
    ([[1.0, 2.0, 3.0], [1.0, None, 2.0]], "non-numeric value 'None'"),
    ([[1.0, 2.0, 3.0], [1.0, {"a": 1}, 2.0]], "non-numeric value"),
])
def test_strings_booleans_and_nulls_are_refused_in_any_row(rows, words):
    with pytest.raises(InvalidRequest, match=words.replace("(", r"\(").replace(")", r"\)")):
        to_batch([spec("x", 3)], {"x": rows}, max_rows=8)


def test_a_caller_that_saw_no_true_false_token_skips_the_type_walk_and_gets_the_same_array():
    rows = [[1, 2.5, 3], [4, 5, 6]]
    a = to_batch([spec("x", 3)], rows, 8, maybe_bools=False)["x"]
    b = to_batch([spec("x", 3)], rows, 8)["x"]
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, np.array([[1, 2.5, 3], [4, 5, 6]], np.float32))
    np.testing.assert_array_equal(a, b)
