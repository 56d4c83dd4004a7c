"""ONNX export: the exported graph, run by onnxruntime, gives what fastbp predicts.

Tolerances (float32 1e-5, float64 1e-12) are relative, ``|a - b| <= rtol * max(|b|, floor)``,
with ``floor = FLOOR * max|b|`` over the whole batch.  Why a floor: an output is a sum of
terms (``a_prev @ W + b``, then an activation), and onnxruntime sums in another order, with
other FMA contractions and its own tanh/sigmoid/exp (within a few ulp), than fastbp's kernels.
Their difference is a few ulp *of the terms*, whatever the size of the sum; an output that is
near 0 because its terms cancel has a relative difference without bound.  The terms are of the
size of the typical output, so an output smaller than a tenth of the largest is compared at
that tenth (an absolute tolerance of ``rtol * 0.1 * max|b|``); every other output relative to
itself.  :func:`test_small_probabilities_keep_relative_accuracy` checks the tails (tiny
probabilities and rates) with no floor at all.
"""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import fastbp  # noqa: E402
from fastbp.model import onnx_export  # noqa: E402

RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
FLOOR = 0.1
DTYPES = (np.float32, np.float64)
HIDDEN = ("relu", "leaky_relu", "sigmoid", "logistic", "tanh", "identity")
OUTPUTS = ("identity", "sigmoid", "softmax", "exp")
SIZES = {"no-hidden": [4, 3], "one-hidden": [4, 7, 3], "three-hidden": [4, 7, 6, 5, 3]}
ELEM = {np.dtype(np.float32): onnx.TensorProto.FLOAT, np.dtype(np.float64): onnx.TensorProto.DOUBLE}


def session(path):
    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def assert_close(actual, expected, floor):
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    rtol = RTOL[expected.dtype]
    bound = rtol * np.maximum(np.abs(expected), floor)
    excess = np.abs(actual.astype(np.float64) - expected) / bound
    assert np.all(np.isfinite(actual)) and excess.max() <= 1, (
        f"worst difference is {excess.max():.3g} times the tolerance")


def assert_runs_like(path, predict, X):
    """The ONNX file at ``path`` gives ``predict(rows)`` for one row and for all of ``X``."""
    expected = predict(X)
    floor = FLOOR * np.abs(expected).max()
    sess = session(path)
    for rows in (X[:1], X):
        (out,) = sess.run(["output"], {"input": rows})
        assert_close(out, expected[:len(rows)], floor)


def random_network(sizes, activation, output, dtype, seed):
    """Initial weights (scaled as for training) with random biases: every unit's offset and
    both signs of every pre-activation are exercised."""
    net = fastbp.Network(sizes, activation=activation, output_activation=output, dtype=dtype,
                         seed=seed)
    rng = np.random.default_rng(seed + 100)
    net.biases = [rng.uniform(-0.5, 0.5, b.shape) for b in net.biases]
    return net


def inputs(n_in, dtype, seed=7, n=37):
    return np.random.default_rng(seed).standard_normal((n, n_in)).astype(dtype)


CASES = [(sizes, act) for sizes in SIZES for act in HIDDEN if sizes != "no-hidden" or act == "relu"]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("sizes,activation", CASES)
def test_export_matches_predict(tmp_path, sizes, activation, output, dtype):
    net = random_network(SIZES[sizes], activation, output, dtype, seed=3)
    path = net.to_onnx(tmp_path / "net.onnx")
    assert path == os.fspath(tmp_path / "net.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert_runs_like(path, net.predict, inputs(SIZES[sizes][0], dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("output,loss", [("softmax", "cross_entropy"),
                                         ("sigmoid", "binary_cross_entropy"),
                                         ("identity", "squared_error"), ("exp", "poisson")])
def test_trained_network(tmp_path, output, loss, dtype):
    rng = np.random.default_rng(11)
    X = rng.standard_normal((60, 5)).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, 3, 60)
    elif loss == "binary_cross_entropy":
        y = (rng.uniform(size=(60, 3)) < 0.5).astype(dtype)
    elif loss == "poisson":
        y = rng.poisson(2.0, (60, 3)).astype(dtype)
    else:
        y = rng.standard_normal((60, 3)).astype(dtype)
    net = fastbp.Network([5, 8, 6, 3], activation="tanh", output_activation=output, dtype=dtype,
                         seed=0)
    fastbp.Trainer(net, loss=loss, learning_rate=1e-2, batch_size=16, epochs=3, seed=0).fit(X, y)
    path = net.to_onnx(tmp_path / "trained.onnx")
    assert_runs_like(path, net.predict, X[:37])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "exp"])
def test_small_probabilities_keep_relative_accuracy(tmp_path, output, dtype):
    """Logits from -30 to 30 (one layer: both sides compute the same z), compared with no
    floor: a probability of 1e-13 is as accurate as one of 0.5 (onnxruntime's own Sigmoid
    is accurate only to about 1e-7 absolute, which is why the output layer does not use it)."""
    net = fastbp.Network([1, 3], output_activation=output, dtype=dtype)
    net.weights = [np.array([[30.0, -30.0, 12.0]])]
    net.biases = [np.zeros(3)]
    X = np.linspace(-1, 1, 37).astype(dtype)[:, None]
    expected = net.predict(X)
    (out,) = session(net.to_onnx(tmp_path / "tails.onnx")).run(None, {"input": X})
    assert expected.min() < 1e-12
    assert_close(out, expected, np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_graph_layout(tmp_path, dtype):
    net = random_network([4, 6, 3], "relu", "softmax", dtype, seed=1)
    model = onnx.load(net.to_onnx(tmp_path / "net.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.producer_name == "fastbp" and model.producer_version == fastbp.__version__
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert model.ir_version == 8
    (inp,), (out,) = model.graph.input, model.graph.output
    for value, n in ((inp, 4), (out, 3)):
        t = value.type.tensor_type
        assert t.elem_type == ELEM[np.dtype(dtype)]
        batch, units = t.shape.dim
        assert batch.dim_param == "batch" and not batch.HasField("dim_value")
        assert units.dim_value == n
    assert (inp.name, out.name) == ("input", "output")
    init = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        np.testing.assert_array_equal(init[f"layers.{l}.weight"], W)
        np.testing.assert_array_equal(init[f"layers.{l}.bias"], b)
        assert init[f"layers.{l}.weight"].dtype == dtype
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["MatMul", "Add", "Relu", "MatMul", "Add", "Softmax"]
    assert model.graph.node[-1].output[0] == "output"
    assert onnx.helper.get_attribute_value(model.graph.node[-1].attribute[0]) == -1   # axis


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_leaky_relu_slope(tmp_path, dtype):
    """float32: the LeakyRelu op (its float alpha is fastbp's slope); float64: Max(z, 0.01 z),
    since alpha = 0.01f would differ from the float64 slope by 2e-8 relative."""
    net = random_network([4, 6, 2], "leaky_relu", "identity", dtype, seed=2)
    model = onnx.load(net.to_onnx(tmp_path / "net.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ("LeakyRelu" in ops) == (dtype == np.float32)
    assert ("Max" in ops) == (dtype == np.float64)


def test_load_then_export(tmp_path):
    net = random_network([4, 5, 5, 2], "sigmoid", "sigmoid", np.float64, seed=4)
    net.save(tmp_path / "model.npz")
    loaded = fastbp.load(tmp_path / "model.npz")
    a = loaded.to_onnx(str(tmp_path / "loaded.onnx"))
    b = net.to_onnx(tmp_path / "direct.onnx")
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()
    assert_runs_like(a, net.predict, inputs(4, np.float64))


def test_overwrites_atomically(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(b"old")
    net = random_network([3, 2], "relu", "identity", np.float32, seed=0)
    net.to_onnx(path)
    assert sorted(os.listdir(tmp_path)) == ["net.onnx"]     # no temporary file left behind
    assert_runs_like(path, net.predict, inputs(3, np.float32))


@pytest.mark.parametrize("path", [123, None, b"net.onnx", ["net.onnx"]])
def test_bad_path_type(path):
    net = fastbp.Network([3, 2])
    with pytest.raises(TypeError, match="path must be"):
        net.to_onnx(path)


def test_empty_path_and_non_finite_parameters(tmp_path):
    net = fastbp.Network([3, 2])
    with pytest.raises(ValueError, match="empty"):
        net.to_onnx("")
    net.weights[0][0, 0] = np.nan    # a view: bypasses the setters' checks
    with pytest.raises(ValueError, match="NaN"):
        net.to_onnx(tmp_path / "nan.onnx")
    assert not os.listdir(tmp_path)


def test_a_path_that_is_no_path(tmp_path):
    with pytest.raises(TypeError, match="str or os.PathLike"):
        fastbp.Network([3, 2]).to_onnx(3)


def test_missing_onnx_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)     # makes `import onnx` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "fastbp\[onnx\]"'):
        fastbp.Network([3, 2]).to_onnx(tmp_path / "x.onnx")


def test_import_fastbp_does_not_import_onnx():
    code = "import sys, fastbp; fastbp.Network([2, 1]); assert 'onnx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- structured networks: normalisation, skips, dropout, per-layer activations ---------------
STRUCTURED = {
    "residual-batch-dropout": dict(sizes=[4, 6, 6, 6, 3], activation="relu", output="softmax",
                                   skips="residual", normalization="batch", dropout=0.3),
    "layer-norm": dict(sizes=[4, 7, 5, 2], activation="tanh", output="identity",
                       normalization="layer"),
    "long-skips": dict(sizes=[4, 4, 4, 4, 3], activation="leaky_relu", output="sigmoid",
                       skips=[(0, 2), (1, 3), (2, 3), (0, 3)], normalization=[None, "batch",
                                                                              "layer"]),
    "mixed-activations": dict(sizes=[3, 5, 5, 5, 5, 5, 2],
                              activation=["identity", "relu", "leaky_relu", "sigmoid", "tanh"],
                              output="exp", skips=[(1, 2), (1, 3), (3, 5)],
                              normalization=["batch", None, "layer", "batch", None],
                              dropout=[0.1, 0.0, 0.5, 0.2, 0.0]),
}


def structured_network(case, dtype, seed=5):
    """A structured network with random biases, γ, β and (batch norm) running statistics
    away from their initial 0/1: every parameter of every normalisation matters."""
    c = STRUCTURED[case]
    net = fastbp.Network(c["sizes"], activation=c["activation"], output_activation=c["output"],
                         skips=c.get("skips"), normalization=c.get("normalization"),
                         dropout=c.get("dropout", 0.0), dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for key, value in net.state_dict().items():
        if key.endswith(".bias"):
            value[...] = rng.uniform(-0.5, 0.5, value.shape)
        elif key.startswith("norms.") and key.endswith(".weight"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith("running_mean"):
            value[...] = rng.uniform(-1, 1, value.shape)
        elif key.endswith("running_var"):
            value[...] = rng.uniform(0.2, 3, value.shape)
    return net


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", STRUCTURED)
def test_structured_network(tmp_path, case, dtype):
    net = structured_network(case, dtype)
    path = net.to_onnx(tmp_path / "net.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"BatchNormalization", "LayerNormalization", "Dropout"}
    init = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    sd = net.state_dict()
    assert {k for k in init if not k.startswith("const.")} == set(sd)
    for key, value in sd.items():
        assert init[key].dtype == dtype
        np.testing.assert_array_equal(init[key], value)
    # a_k is what layer k's MatMul reads (a_0: "input"); a_j ends in one Add per skip (i, j),
    # i ascending, of the tensor of a_i
    nodes = {n.output[0]: n for n in model.graph.node}
    a = [nodes[f"layers.{k}.matmul"].input[0] for k in range(net.n_layers)]
    assert a[0] == "input"
    for j in range(1, net.n_layers):
        tensor = a[j]
        for i in sorted((i for i, k in net.skips if k == j), reverse=True):
            add = nodes[tensor]
            assert add.op_type == "Add" and add.input[1] == a[i]
            tensor = add.input[0]
    assert_runs_like(path, net.predict, inputs(net.layer_sizes[0], dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_trained_batch_norm(tmp_path, dtype):
    """Running statistics from training (data far from standardised, so they are far from
    0/1) and trained γ/β, with dropout and a residual path; layer norm trained alongside."""
    rng = np.random.default_rng(12)
    X = (rng.standard_normal((96, 5)) * [1, 3, 0.5, 2, 1] + [2, -1, 4, 0, 1]).astype(dtype)
    y = rng.integers(0, 3, 96)
    net = fastbp.Network([5, 8, 8, 6, 3], activation=["relu", "tanh", "sigmoid"],
                         output_activation="softmax", skips=[(1, 2)],
                         normalization=["batch", "batch", "layer"], dropout=[0.2, 0.1, 0.0],
                         dtype=dtype, seed=0)
    fastbp.Trainer(net, learning_rate=1e-2, batch_size=16, epochs=4, seed=0).fit(X, y)
    sd = net.state_dict()
    for l in (0, 1):
        assert np.abs(sd[f"norms.{l}.running_mean"]).max() > 0.1
        assert np.abs(sd[f"norms.{l}.running_var"] - 1).max() > 0.1
    for l in (0, 1, 2):
        assert np.abs(sd[f"norms.{l}.weight"] - 1).max() > 1e-3
        assert np.abs(sd[f"norms.{l}.bias"]).max() > 1e-3
    path = net.to_onnx(tmp_path / "trained.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert_runs_like(path, net.predict, X[:37])


def test_dropout_is_not_in_the_graph(tmp_path):
    """Inference ignores dropout: the same parameters give the same graph with or without."""
    graphs = []
    for p in (0.0, 0.5):
        net = fastbp.Network([4, 6, 6, 2], skips="residual", normalization="layer", dropout=p,
                             dtype=np.float64, seed=3)
        graphs.append(onnx.load(net.to_onnx(tmp_path / f"p{p}.onnx")).graph.SerializeToString())
    assert graphs[0] == graphs[1]


def test_structured_load_then_export(tmp_path):
    net = structured_network("mixed-activations", np.float32)
    net.save(tmp_path / "model.npz")
    a = fastbp.load(tmp_path / "model.npz").to_onnx(tmp_path / "loaded.onnx")
    b = net.to_onnx(tmp_path / "direct.onnx")
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()


@pytest.mark.parametrize("change,match", [
    (dict(norm="batch"), "gamma missing"),
    (dict(norm="group"), "unknown normalisation"),
    (dict(skips_from=(0,)), "skip from a_0 of width 3"),
    (dict(skips_from=(2,)), "a skip comes from"),
])
def test_layer_checks(change, match):
    import dataclasses
    layers, _ = fastbp.Network([3, 4, 2], dtype=np.float64).onnx_layers()
    layers[0] = dataclasses.replace(layers[0], **change)
    with pytest.raises(ValueError, match=match):
        onnx_export.model(layers)


def test_output_layer_takes_no_normalisation():
    import dataclasses
    layers, _ = fastbp.Network([3, 4, 2], dtype=np.float64).onnx_layers()
    ones = np.ones(2)
    layers[1] = dataclasses.replace(layers[1], norm="layer", gamma=ones, beta=ones)
    with pytest.raises(ValueError, match="output layer takes no"):
        onnx_export.model(layers)


# --- scikit-learn estimators -----------------------------------------------------------------
@pytest.fixture
def sk():
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("n_classes,activation", [(2, "relu"), (2, "logistic"), (3, "tanh"),
                                                  (4, "leaky_relu")])
def test_classifier(tmp_path, sk, n_classes, activation, dtype):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((80, 4)).astype(dtype)
    y = np.array(["a", "b", "c", "d"])[rng.integers(0, n_classes, 80)]
    clf = fastbp.MLPClassifier((6, 5), activation=activation, max_iter=15, random_state=0).fit(X, y)
    assert clf.coefs_[0].dtype == dtype    # the estimator keeps float32 data in float32
    path = clf.to_onnx(tmp_path / "clf.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == n_classes
    assert_runs_like(path, clf.predict_proba, X[:37])


def test_multilabel_classifier(tmp_path, sk):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((50, 4))
    Y = (rng.uniform(size=(50, 3)) < 0.5).astype(int)
    clf = fastbp.MLPClassifier((5,), max_iter=10, random_state=0).fit(X, Y)
    assert_runs_like(clf.to_onnx(tmp_path / "ml.onnx"), clf.predict_proba, X[:37])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("n_outputs,loss", [(1, "squared_error"), (3, "squared_error"),
                                            (1, "poisson"), (2, "poisson")])
def test_regressor(tmp_path, sk, n_outputs, loss, dtype):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((70, 4)).astype(dtype)
    y = rng.poisson(2.0, (70, n_outputs)).astype(dtype)
    if n_outputs == 1:
        y = y.ravel()
    reg = fastbp.MLPRegressor(loss=loss, hidden_layer_sizes=(7,), activation="tanh",
                              max_iter=15, random_state=0).fit(X, y)
    path = reg.to_onnx(tmp_path / "reg.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    assert len(dims) == (1 if n_outputs == 1 else 2)
    assert reg.predict(X).shape == ((70,) if n_outputs == 1 else (70, n_outputs))
    assert_runs_like(path, reg.predict, X[:37])


def test_estimator_errors(tmp_path, sk):
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        fastbp.MLPRegressor().to_onnx(tmp_path / "x.onnx")
    reg = fastbp.MLPRegressor(hidden_layer_sizes=(3,), max_iter=2).fit(np.eye(4), np.arange(4.0))
    with pytest.raises(TypeError, match="path must be"):
        reg.to_onnx(42)
