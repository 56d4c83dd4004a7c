"""Network structure: the flat buffer and its views, initialisation, forward, save/load."""
import numpy as np
import pytest

import fastbp
import naive


def test_views_share_one_flat_buffer():
    net = fastbp.Network([3, 4, 2], seed=0)
    assert [W.shape for W in net.weights] == [(3, 4), (4, 2)]
    assert [b.shape for b in net.biases] == [(4,), (2,)]
    assert net.params.size == 3 * 4 + 4 + 4 * 2 + 2
    for arr in net.weights + net.biases:
        assert np.shares_memory(arr, net.params) and arr.flags.writeable
    net.weights[1][0, 0] = 42.0
    net.biases[0][:] = 1.5
    assert net.params[3 * 4 + 4] == 42.0
    assert np.all(net.params[12:16] == 1.5)
    assert (net.layer_sizes, net.activation, net.output_activation, net.dtype) == \
        ([3, 4, 2], "relu", "identity", np.dtype(np.float32))


def test_forward_matches_naive(rng):
    for dtype in (np.float32, np.float64):
        net = fastbp.Network([6, 9, 7, 3], activation="tanh", output_activation="softmax", dtype=dtype, seed=2)
        X = rng.standard_normal((1300, 6))        # more rows than one forward chunk
        _, a = naive.forward(net.weights, net.biases, "tanh", "softmax", X)
        out = net.forward(X)
        assert out.dtype == dtype and out.shape == (1300, 3)
        np.testing.assert_allclose(out, a[-1], rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-6)
        np.testing.assert_array_equal(net.predict(X), out)


@pytest.mark.parametrize("init,expected_std", [("glorot_uniform", np.sqrt(2 / (400 + 300))),
                                               ("glorot_normal", np.sqrt(2 / (400 + 300))),
                                               ("he_uniform", np.sqrt(2 / 400)),
                                               ("he_normal", np.sqrt(2 / 400)),
                                               ("normal", 0.01)])
def test_initialisations(init, expected_std):
    net = fastbp.Network([400, 300], init=init, dtype=np.float64, seed=0)
    W = net.weights[0]
    assert W.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(W.mean()) < 0.1 * expected_std and np.all(net.biases[0] == 0)
    if init.endswith("uniform"):
        assert np.abs(W).max() <= np.sqrt(3) * expected_std + 1e-12


def test_auto_init_and_seeds():
    relu = fastbp.Network([200, 100], activation="relu", init="auto", dtype=np.float64, seed=0)
    tanh = fastbp.Network([200, 100], activation="tanh", init="auto", dtype=np.float64, seed=0)
    assert relu.weights[0].std() == pytest.approx(np.sqrt(2 / 200), rel=0.05)
    assert tanh.weights[0].std() == pytest.approx(np.sqrt(2 / 300), rel=0.05)
    a, b = (fastbp.Network([5, 3], seed=7) for _ in range(2))
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, fastbp.Network([5, 3], seed=8).params)


def test_assigning_weights_validates_all_before_writing():
    net = fastbp.Network([2, 3, 1], seed=0)
    before = net.params.copy()
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape \(3, 1\)"):
        net.weights = [np.zeros((2, 3)), np.zeros((3, 2))]
    with pytest.raises(ValueError, match="NaN or inf"):
        net.biases = [np.zeros(3), np.array([np.nan])]
    np.testing.assert_array_equal(net.params, before)


def test_save_load_round_trip(tmp_path, rng):
    for dtype in (np.float32, np.float64):
        net = fastbp.Network([4, 5, 2], activation="leaky_relu", output_activation="sigmoid", dtype=dtype, seed=1)
        path = tmp_path / f"m{np.dtype(dtype).name}.npz"
        net.save(path)
        back = fastbp.load(path)
        assert back.params.dtype == dtype
        np.testing.assert_array_equal(back.params, net.params)
        assert (back.layer_sizes, back.activation, back.output_activation) == (net.layer_sizes, "leaky_relu", "sigmoid")
        X = rng.standard_normal((5, 4))
        np.testing.assert_array_equal(back.forward(X), net.forward(X))


def _saved(tmp_path):
    path = tmp_path / "model.npz"
    fastbp.Network([3, 2], seed=0).save(path)
    return path


def test_load_refuses_truncated_file(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model file"):
        fastbp.load(path)


def test_load_refuses_altered_parameters(tmp_path):
    path = _saved(tmp_path)
    with np.load(path) as z:
        params, meta = z["params"].copy(), z["meta"]
    params[0] += 1
    np.savez(path, params=params, meta=meta)
    with pytest.raises(ValueError, match="checksum mismatch"):
        fastbp.load(path)


def test_load_refuses_foreign_and_pickled_files(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastbp model file"):
        fastbp.load(foreign)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError):
        fastbp.load(text)
    pickled = tmp_path / "pickled.npz"
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    np.savez(pickled, params=np.array([Evil()], dtype=object),
             meta=np.frombuffer(b'{"format": "fastbp.network", "version": 2}', np.uint8))
    with pytest.raises(ValueError, match="pickled objects"):
        fastbp.load(pickled)
    assert not marker.exists()


def test_load_refuses_bad_metadata(tmp_path):
    path = _saved(tmp_path)
    with np.load(path) as z:
        params = z["params"].copy()
    np.savez(path, params=params, meta=np.frombuffer(b'{"format": "fastbp.network", "version": 99}', np.uint8))
    with pytest.raises(ValueError, match="format version 99"):
        fastbp.load(path)
