"""The worked examples of the course material (docs/design.md, "Worked examples"), reproduced
through the public API."""
import numpy as np
import pytest

import fastbp

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
XOR_T = np.array([0, 1, 1, 0], float)


def test_xor_network_outputs_and_bce_losses():
    net = fastbp.Network([2, 2, 1], activation="sigmoid", output_activation="sigmoid", dtype=np.float64)
    net.weights = [np.array([[.96, .89], [.28, .73]]), np.array([[.60], [.22]])]
    net.biases = [np.zeros(2), np.zeros(1)]
    out = net.forward(XOR_X).ravel()
    np.testing.assert_allclose(out, [.60, .62, .64, .66], atol=0.006)
    per_sample = [net.loss(XOR_X[i:i + 1], XOR_T[i:i + 1], loss="binary_cross_entropy") for i in range(4)]
    np.testing.assert_allclose(per_sample, [.92, .48, .44, 1.07], atol=0.006)


def test_perceptron_with_sigmoid_output():
    net = fastbp.Network([2, 1], output_activation="sigmoid", dtype=np.float64)
    net.weights = [np.array([[-1.15], [-0.21]])]
    net.biases = [np.array([4.1])]
    out = net.forward([[0, 6], [6, 8]]).ravel()
    np.testing.assert_allclose(out, [0.94, 0.01], atol=0.005)


def test_linear_neuron_gradient():
    # ŷ = w x + b, w = 2, b = 1, sample (3, 9), L = e² = 2 · (½ e²): ∂L/∂w = −12, ∂L/∂b = −4
    net = fastbp.Network([1, 1], output_activation="identity", dtype=np.float64)
    net.weights = [np.array([[2.0]])]
    net.biases = [np.array([1.0])]
    loss, gW, gb = net.gradients([[3.0]], [9.0], loss="squared_error")
    assert 2 * loss == pytest.approx(4.0)          # e = 9 − 7 = 2, L = e² = 4
    assert 2 * gW[0][0, 0] == pytest.approx(-12.0)
    assert 2 * gb[0][0] == pytest.approx(-4.0)


def test_delta_rule_cafeteria_bill():
    # prices all 0.50, quantities (5, 2, 3), true bill 8.50, η = 1/35: Δw = η x (t − y)
    net = fastbp.Network([3, 1], output_activation="identity", dtype=np.float64)
    net.weights = [np.full((3, 1), 0.5)]
    net.biases = [np.zeros(1)]
    trainer = fastbp.Trainer(net, loss="squared_error", optimizer="sgd", learning_rate=1 / 35,
                             batch_size=1, epochs=1, shuffle=False)
    before = net.weights[0].ravel().copy()
    trainer.fit([[5.0, 2.0, 3.0]], [8.50])
    net.biases[0][...] = 0                               # the delta rule has no bias
    np.testing.assert_allclose(net.weights[0].ravel() - before, [0.50, 0.20, 0.30], atol=1e-12)
    # new prices (1.00, 0.70, 0.80) give 8.80: the step overshoots, an error of 0.30 the other way
    new_error = 8.50 - net.forward([[5.0, 2.0, 3.0]]).item()
    assert new_error == pytest.approx(-0.30, abs=1e-12)
