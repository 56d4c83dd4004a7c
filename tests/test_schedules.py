"""Learning-rate schedules (torch.optim.lr_scheduler's semantics, stepped once per epoch) and
early stopping that keeps the best model."""
import json
import math

import numpy as np
import pytest

import fastbp
from fastbp import schedules

SCHEDULES = {
    "step": lambda: schedules.StepLR(3, gamma=0.5),
    "multistep": lambda: schedules.MultiStepLR([2, 5, 5, 9], gamma=0.3),
    "exponential": lambda: schedules.ExponentialLR(0.9),
    "cosine": lambda: schedules.CosineAnnealingLR(4, eta_min=0.001),
    "lambda": lambda: schedules.LambdaLR(lambda e: 1.0 / (1 + e)),
    "plateau": lambda: schedules.ReduceLROnPlateau(factor=0.5, patience=2, threshold=0.01),
}
# a loss that improves, stalls, improves: what ReduceLROnPlateau is stepped with
METRICS = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7]


def _rates(make, epochs=14, lr=0.1):
    s = make()
    s._start(lr)
    out = []
    for e in range(epochs):
        out.append(s.rate)
        s.step(METRICS[e])
    return out


def test_closed_forms():
    assert _rates(SCHEDULES["step"], 7) == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025])
    ms = _rates(SCHEDULES["multistep"], 10)
    assert ms == pytest.approx([0.1] * 2 + [0.03] * 3 + [0.03 * 0.09] * 4 + [0.03 * 0.09 * 0.3])
    assert _rates(SCHEDULES["exponential"], 4) == pytest.approx([0.1 * 0.9 ** e for e in range(4)])
    cos = _rates(SCHEDULES["cosine"], 9)
    closed = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(9)]
    assert cos == pytest.approx(closed, rel=1e-12, abs=1e-15)     # periodic past T_max, as torch
    assert _rates(SCHEDULES["lambda"], 4) == pytest.approx([0.1 / (1 + e) for e in range(4)])
    # plateau: patience 2, so the third epoch without a 1% improvement halves the rate
    pl = _rates(SCHEDULES["plateau"])
    assert pl == [0.1] * 5 + [0.05] * 4 + [0.025] * 4 + [0.0125]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_rates_match_torch(name):
    torch = pytest.importorskip("torch")
    make = SCHEDULES[name]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    s = make()
    kw = {k: v for k, v in vars(s).items() if not k.startswith("_") and k not in
          ("base_rate", "rate", "last_epoch")}
    cls = getattr(torch.optim.lr_scheduler, type(s).__name__)
    if name == "lambda":
        kw = {"lr_lambda": kw["fn"]}
    ts = cls(opt, **kw)
    want = []
    for e in range(14):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        ts.step(METRICS[e]) if name == "plateau" else ts.step()
    assert _rates(make) == want                      # bit for bit


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_trainer_follows_the_schedule_and_resumes_bitwise(rng, name):
    X = rng.standard_normal((120, 5))
    y = rng.integers(0, 3, 120)
    val = (X[:30], y[:30])

    def make():
        net = fastbp.Network([5, 8, 3], output_activation="softmax", dtype=np.float64, seed=0)
        return fastbp.Trainer(net, optimizer="momentum", learning_rate=0.1, batch_size=2,
                              epochs=6, seed=1, schedule=SCHEDULES[name]())
    full = make()
    h = full.fit(X, y, validation_data=val)
    metric = h.val_loss
    s = SCHEDULES[name]()
    s._start(0.1)
    want = []
    for e in range(6):
        want.append(s.rate)
        s.step(metric[e])
    assert h.learning_rate == pytest.approx(want, rel=1e-6)
    first = make()
    polls = []
    first.fit(X, y, validation_data=val)
    first.epochs = 3
    hs = first.fit(X, y, validation_data=val, stop=lambda: polls.append(1) or len(polls) == 1)
    arrays, info = first.state()
    second = make()
    second.load_state(arrays, json.loads(json.dumps(info)))
    second.epochs = 6
    second.fit(X, y, validation_data=val)
    ref = make()
    ref.epochs = 12
    ref.fit(X, y, validation_data=val)
    assert hs.interrupted
    assert np.array_equal(second.network.params, ref.network.params)


def test_plain_schedule_changes_nothing_for_a_constant_rate(rng):
    X = rng.standard_normal((64, 4))
    y = rng.integers(0, 2, 64)
    nets = [fastbp.Network([4, 6, 2], output_activation="softmax", dtype=np.float64, seed=0)
            for _ in range(2)]
    fastbp.Trainer(nets[0], learning_rate=0.05, epochs=3, seed=2).fit(X, y)
    fastbp.Trainer(nets[1], learning_rate=0.05, epochs=3, seed=2,
                   schedule=schedules.StepLR(10)).fit(X, y)
    assert np.array_equal(nets[0].params, nets[1].params)


def test_early_stopping_restores_the_best_epoch(rng):
    X = rng.standard_normal((40, 10))
    y = rng.integers(0, 3, 40)              # noise: a big net overfits at once
    Xv, yv = rng.standard_normal((40, 10)), rng.integers(0, 3, 40)
    net = fastbp.Network([10, 64, 3], output_activation="softmax", dtype=np.float64, seed=0)
    tr = fastbp.Trainer(net, learning_rate=0.01, batch_size=8, epochs=200, seed=1,
                        early_stopping=3)
    h = tr.fit(X, y, validation_data=(Xv, yv))
    assert h.stopped_early and h.epochs < 200
    best = int(np.argmin(h.val_loss))
    assert h.best_epoch == best and h.epochs == best + 1 + 3
    assert net.loss(Xv, yv) == h.val_loss[best]         # the best epoch's parameters, exactly
    kept = fastbp.Network([10, 64, 3], output_activation="softmax", dtype=np.float64, seed=0)
    h2 = fastbp.Trainer(kept, learning_rate=0.01, batch_size=8, epochs=200, seed=1,
                        early_stopping=3, restore_best=False).fit(X, y, validation_data=(Xv, yv))
    assert h2.epochs == h.epochs and kept.loss(Xv, yv) == h2.val_loss[-1]


def test_min_delta_counts_small_gains_as_none(rng):
    X = rng.standard_normal((64, 4))
    y = rng.integers(0, 2, 64)
    net = fastbp.Network([4, 6, 2], output_activation="softmax", dtype=np.float64, seed=0)
    h = fastbp.Trainer(net, learning_rate=1e-6, epochs=50, seed=2, early_stopping=2,
                       min_delta=1e-3).fit(X, y, validation_data=(X, y))
    assert h.stopped_early and h.epochs == 3 and h.best_epoch == 0


@pytest.mark.parametrize("kw,err,match", [
    (dict(schedule="cosine"), TypeError, "schedule"),
    (dict(schedule=schedules.StepLR), TypeError, "schedule"),
    (dict(early_stopping=0), ValueError, "early_stopping"),
    (dict(early_stopping=2.5), TypeError, "early_stopping"),
    (dict(min_delta=-1.0), ValueError, "min_delta"),
    (dict(restore_best="yes"), TypeError, "restore_best"),
])
def test_bad_controls_are_refused(kw, err, match):
    net = fastbp.Network([2, 2], output_activation="softmax")
    with pytest.raises(err, match=match):
        fastbp.Trainer(net, **kw)


@pytest.mark.parametrize("make,match", [
    (lambda: schedules.StepLR(0), "step_size"),
    (lambda: schedules.StepLR(2, gamma=0), "gamma"),
    (lambda: schedules.MultiStepLR("3"), "milestones"),
    (lambda: schedules.MultiStepLR([0, 2]), "milestones"),
    (lambda: schedules.ExponentialLR(-1), "gamma"),
    (lambda: schedules.CosineAnnealingLR(0), "T_max"),
    (lambda: schedules.LambdaLR(3), "fn"),
    (lambda: schedules.ReduceLROnPlateau(factor=1.0), "factor"),
    (lambda: schedules.ReduceLROnPlateau(mode="up"), "mode"),
])
def test_bad_schedules_are_refused(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_early_stopping_needs_validation_data(rng):
    net = fastbp.Network([2, 2], output_activation="softmax")
    before = net.params.copy()
    tr = fastbp.Trainer(net, early_stopping=2)
    with pytest.raises(ValueError, match="validation_data"):
        tr.fit(rng.standard_normal((8, 2)), rng.integers(0, 2, 8))
    assert np.array_equal(net.params, before)


@pytest.mark.parametrize("damage", [
    lambda i: i.__setitem__("best", {"loss": "low"}),
    lambda i: i.__setitem__("best", 3),
    lambda i: i.__setitem__("schedule", {"last_epoch": -1, "rate": 0.1, "base_rate": 0.1, "best": 1.0, "bad": 0}),
    lambda i: i.__setitem__("schedule", {"last_epoch": 2, "rate": 0.1, "base_rate": 0.1, "best": "x", "bad": 0}),
])
def test_damaged_schedule_or_early_stopping_state_is_refused(rng, damage):
    X = rng.standard_normal((40, 4))
    y = rng.integers(0, 2, 40)

    def make():
        net = fastbp.Network([4, 6, 2], output_activation="softmax", dtype=np.float64, seed=0)
        return fastbp.Trainer(net, epochs=3, early_stopping=5,
                              schedule=schedules.ReduceLROnPlateau(patience=1))
    tr = make()
    tr.fit(X, y, validation_data=(X, y))
    arrays, info = tr.state()
    info = json.loads(json.dumps(info))
    damage(info)
    other = make()
    before = (other.network.params.copy(), other.schedule.state())
    with pytest.raises(ValueError):
        other.load_state(arrays, info)
    assert np.array_equal(other.network.params, before[0]) and other.schedule.state() == before[1]
