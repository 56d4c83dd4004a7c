"""kernels/native.py: calls through the function table behave as direct calls (results,
exceptions), refuse arguments the canonical signature cannot take, and raise on an empty slot."""
import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

import fastbp.kernels.train  # noqa: F401  (its import defines every slot's Native)
from fastbp.kernels import native


@njit(cache=False)
def _scaled_sum(k, a, out):
    if k < 0:
        raise ValueError("negative k")
    s = 0.0
    for i in range(a.shape[0]):
        out[i] = a[i] * k
        s += out[i]
    return s


N = native.Native(None, _scaled_sum, "i f1 f1 -> d")     # in no slot of the table
stub = N.stub


@njit(cache=False)
def _caller(addr, k, a, out):
    return stub(addr, k, a, out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_indirect_call_returns_what_the_direct_one_does(dtype):
    a = np.arange(5, dtype=dtype)
    out = np.zeros(5, dtype)
    got = _caller(N.address(dtype), 3, a, out)
    assert got == _scaled_sum(3, a, np.zeros(5, dtype)) == 30.0
    np.testing.assert_array_equal(out, 3 * a)


def test_the_callees_exception_reaches_the_caller():
    with pytest.raises(ValueError, match="negative k"):
        _caller(N.address(np.float64), -1, np.ones(3), np.zeros(3))


def test_an_empty_slot_raises_instead_of_jumping_to_zero():
    out = np.zeros(3)
    with pytest.raises(RuntimeError, match="_scaled_sum is not in the function table"):
        _caller(0, 2, np.ones(3), out)
    assert (out == 0).all()


def test_arguments_the_signature_cannot_take_fail_the_callers_typing():
    with pytest.raises(TypingError, match="argument 1 is array\\(float64, 2d"):
        _caller(N.address(np.float64), 2, np.ones((3, 1)), np.zeros(3))


def test_the_table_fills_slots_on_demand():
    t = native.Table(np.float32)
    assert (t.fns == 0).all() and t.fns.shape == (native.SLOTS,)
    t.need([native.FN_GEMM])
    assert t.fns[native.FN_GEMM] != 0 and (np.delete(t.fns, native.FN_GEMM) == 0).all()
    assert all(n is not None and n.slot == s for s, n in enumerate(native.NATIVES))
