"""Trainer: the batching plan, the epoch loop, history and the divergence guard.

Python decides (validation, permutation, history, callbacks); one compiled call runs each epoch.
"""
import time

import numpy as np

from .. import _config
from .._validation import check_choice, check_float, check_int, check_targets, check_X
from ..kernels import train as K
from ..kernels.losses import LOSSES
from ..kernels.optimizers import CHUNK, OPTIMIZERS, STATE_ARRAYS
from .network import NO_WEIGHTS, PREDICT_CHUNK, Network, Workspace


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss, gradient or parameter.  The network holds the last
    finite parameters (those before the failing step)."""


class History:
    """Per-epoch record of a fit.

    Attributes
    ----------
    loss : list of float
        Mean per-sample training loss of each epoch (accumulated over its mini-batches, as the
        weights change, like scikit-learn's ``loss_curve_``).
    val_loss : list of float
        Mean validation loss after each epoch (empty without validation data).
    grad_norm : ndarray (epochs, layers)
        Mean over the epoch's steps of each layer's gradient norm ``‖(∂E/∂W, ∂E/∂b)‖``.
    weight_norm : ndarray (epochs, layers)
        Each layer's parameter norm ``‖(W, b)‖`` at the end of the epoch.
    seconds : list of float
        Wall time of each epoch.
    """

    def __init__(self, n_layers):
        self.interrupted = False    # a fit stopped mid-epoch (see Trainer.fit's ``stop``)
        self.loss, self.val_loss, self.seconds = [], [], []
        self._grad, self._weight = [], []
        self._n_layers = n_layers

    @property
    def grad_norm(self):
        return np.array(self._grad, dtype=np.float64).reshape(-1, self._n_layers)

    @property
    def weight_norm(self):
        return np.array(self._weight, dtype=np.float64).reshape(-1, self._n_layers)

    @property
    def epochs(self):
        return len(self.loss)

    def __repr__(self):
        last = f", loss={self.loss[-1]:.6g}" if self.loss else ""
        return f"History(epochs={self.epochs}{last})"


class Trainer:
    """Mini-batch training of a :class:`Network` in place.

    Parameters
    ----------
    network : Network
    loss : {"cross_entropy", "squared_error", "binary_cross_entropy"}
    optimizer : {"adam", "sgd", "momentum", "nesterov", "adamw", "rmsprop"}
        PyTorch's update rules (torch.optim.SGD / Adam / AdamW / RMSprop with alpha 0.99).
    learning_rate : float > 0
    batch_size : int >= 1 or None
        ``None``: full-batch gradient descent; ``1``: stochastic gradient descent.
    epochs : int >= 1
    shuffle : bool
        Draw a new permutation of the samples every epoch.
    seed : int or None
        Seed of the shuffling.
    momentum, beta1, beta2, eps, weight_decay : float
        Optimizer hyperparameters (momentum: momentum/nesterov; beta1, beta2: adam/adamw;
        eps: adam/adamw/rmsprop; weight_decay: L2 added to the gradient, decoupled for adamw).
    verbose : bool
        Print one line per epoch.
    callback : callable or None
        ``callback(epoch, history)`` after every epoch; returning True stops training.

    Optimizer state and the shuffling generator persist across :meth:`fit` calls, so two fits of
    5 epochs equal one of 10.
    """

    STOP_STEPS = 32   # steps per compiled call when fit polls a ``stop`` callable

    def __init__(self, network, loss="cross_entropy", optimizer="adam", learning_rate=1e-3,
                 batch_size=32, epochs=10, shuffle=True, seed=None, momentum=0.9, beta1=0.9,
                 beta2=0.999, eps=1e-8, weight_decay=0.0, verbose=False, callback=None):
        if not isinstance(network, Network):
            raise TypeError(f"network must be a fastbp.Network; got {type(network).__name__}")
        self.network = network
        self.loss = network.loss_name(loss)
        self.optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
        self.learning_rate = check_float("learning_rate", learning_rate, 0, None, low_open=True)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size)
        self.epochs = check_int("epochs", epochs)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False; got {shuffle!r}")
        self.shuffle = bool(shuffle)
        self.momentum = check_float("momentum", momentum, 0, 1, high_open=True)
        self.beta1 = check_float("beta1", beta1, 0, 1, high_open=True)
        self.beta2 = check_float("beta2", beta2, 0, 1, high_open=True)
        self.eps = check_float("eps", eps, 0, None, low_open=True)
        self.weight_decay = check_float("weight_decay", weight_decay, 0, None)
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable or None")
        self.verbose, self.callback, self.seed = bool(verbose), callback, seed
        self._rng = np.random.default_rng(seed)
        n = network.params.shape[0]
        self._state = [np.zeros(n, network.dtype) if i < STATE_ARRAYS[OPTIMIZERS[self.optimizer]]
                       else np.zeros(0, network.dtype) for i in range(2)]
        self.step = 0   # optimizer steps taken (PyTorch's step count)
        self._pending = None   # an epoch interrupted by ``stop``

    def state(self):
        """Everything a later run needs to continue this one bitwise: ``(arrays, info)`` with
        ``arrays`` = parameters and optimizer buffers (copies) and ``info`` = a JSON-able dict
        (optimizer step, shuffling generator state, the configuration that must not change)."""
        arrays = {"params": self.network.params.copy(), "state1": self._state[0].copy(),
                  "state2": self._state[1].copy()}
        info = {"step": self.step, "rng": self._rng.bit_generator.state,
                "config": self._config(), "pending": None}
        if self._pending is not None:
            p = self._pending
            arrays["pending_perm"], arrays["pending_gnorm"] = p["perm"].copy(), p["gnorm"].copy()
            info["pending"] = {k: p[k] for k in ("done", "total", "n", "batch")}
        return arrays, info

    def load_state(self, arrays, info):
        """Restore what :meth:`state` returned (the trainer must be configured the same way)."""
        if info.get("config") != self._config():
            raise ValueError(f"the saved training state was made with {info.get('config')}, "
                             f"not {self._config()}")
        for name, buf in (("params", self.network.params), ("state1", self._state[0]),
                          ("state2", self._state[1])):
            saved = np.asarray(arrays[name])
            if saved.shape != buf.shape or saved.dtype != buf.dtype:
                raise ValueError(f"saved {name} has shape {saved.shape} and dtype {saved.dtype}; "
                                 f"this trainer needs {buf.shape} {buf.dtype}")
        rng = np.random.default_rng()
        rng.bit_generator.state = info["rng"]    # validated before anything changes
        pending = None
        if info.get("pending"):
            pending = {**info["pending"], "perm": np.array(arrays["pending_perm"], np.int64),
                       "gnorm": np.array(arrays["pending_gnorm"], np.float64)}
        for name, buf in (("params", self.network.params), ("state1", self._state[0]),
                          ("state2", self._state[1])):
            buf[...] = arrays[name]
        self._rng = rng
        self.step = int(info["step"])
        self._pending = pending

    def _config(self):
        net = self.network
        return {"layer_sizes": net.layer_sizes, "activation": net.activation,
                "output_activation": net.output_activation, "dtype": net.dtype.name,
                "loss": self.loss, "optimizer": self.optimizer,
                "learning_rate": self.learning_rate, "batch_size": self.batch_size,
                "shuffle": self.shuffle, "momentum": self.momentum, "beta1": self.beta1,
                "beta2": self.beta2, "eps": self.eps, "weight_decay": self.weight_decay}

    def _hyper(self):
        h = [self.learning_rate, self.momentum, self.beta1, self.beta2, self.eps, self.weight_decay]
        return np.array(h, dtype=self.network.dtype)

    def fit(self, X, y, validation_data=None, stop=None):
        """Train the network in place from its current parameters; returns a :class:`History`.

        ``stop``, when given, is polled every :attr:`STOP_STEPS` steps; when it returns True the
        fit returns at once, mid-epoch, with ``history.interrupted`` set.  The unfinished epoch
        is kept (its order, position and partial sums: in :meth:`state` too), and the next
        ``fit`` finishes it before starting a new one: stopped and resumed, the result is
        bitwise that of an uninterrupted fit.

        Raises
        ------
        TrainingDivergedError
            When a loss, gradient or parameter becomes non-finite; the network keeps the last
            finite parameters and ``exc.history`` holds the completed epochs.
        """
        net = self.network
        sizes = net.layer_sizes
        X = check_X(X, net.dtype, sizes[0])
        Yf, Yi = check_targets(y, self.loss, sizes[-1], X.shape[0], net.dtype)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            Xv = check_X(validation_data[0], net.dtype, sizes[0], name="X_val")
            val = (Xv,) + check_targets(validation_data[1], self.loss, sizes[-1], Xv.shape[0],
                                        net.dtype, name="y_val")
        n = X.shape[0]
        batch = n if self.batch_size is None else min(self.batch_size, n)
        ws = Workspace(sizes, batch, net.dtype, train=True)
        vws = Workspace(sizes, min(PREDICT_CHUNK, val[0].shape[0]), net.dtype) if val else None
        grads = np.zeros_like(net.params)
        hyper = self._hyper()
        consts = np.zeros(10, net.dtype)
        flags = np.zeros(-(-net.params.shape[0] // CHUNK), net.dtype)   # one per update chunk
        gnorm = np.zeros(net.n_layers, np.float64)
        codes = (net._act, net._out, LOSSES[self.loss], OPTIMIZERS[self.optimizer])
        perm = np.arange(n, dtype=np.int64)
        history = History(net.n_layers)
        s1, s2 = self._state
        sw = NO_WEIGHTS.astype(net.dtype)

        n_steps = -(-n // batch)
        pending = self._pending
        if pending is not None and (pending["n"] != n or pending["batch"] != batch):
            raise ValueError(f"an interrupted epoch over {pending['n']} samples in batches of "
                             f"{pending['batch']} is pending; finish it with the same data")

        def run(first, max_steps, step0):
            return K.train_epoch(X, Yf, Yi, sw, perm[first * batch:], batch, max_steps,
                                 net.params, grads, ws.part, s1, s2, hyper, step0, net._layout,
                                 *codes,
                                 0.0, 1.0, ws.acts, ws.aoff, ws.deltas, ws.doff, ws.rowloss,
                                 ws.sq, ws.gsq, consts, flags, gnorm)

        with _config.ready():    # a no-op, or a lock if numba only has workqueue
            for epoch in range(self.epochs):
                t0 = time.perf_counter()
                if self._pending is not None:       # finish the interrupted epoch first
                    p, self._pending = self._pending, None
                    perm[...] = p["perm"]
                    done, total = p["done"], p["total"]
                    gnorm[...] = p["gnorm"]
                else:
                    if self.shuffle:   # a fresh draw, independent of the last: fits can be split
                        perm[...] = self._rng.permutation(n)
                    done, total = 0, 0.0
                    gnorm[:] = 0
                snapshot = (net.params.copy(), s1.copy(), s2.copy(), done, self.step)
                while done < n_steps:
                    k = n_steps - done if stop is None else min(self.STOP_STEPS, n_steps - done)
                    part, steps, status = run(done, k, self.step)
                    if status != K.OK:
                        self._diverged(status, done + steps, snapshot, run, epoch, history)
                    self.step += steps
                    done += steps
                    total += part
                    if stop is not None and done < n_steps and stop():
                        self._pending = {"perm": perm.copy(), "done": done, "total": total,
                                         "gnorm": gnorm.copy(), "n": n, "batch": batch}
                        history.interrupted = True
                        return history
                history.loss.append(total / n)
                history._grad.append(gnorm / n_steps)
                history._weight.append(weight_norms(net))
                if val is not None:
                    vt = K.evaluate(*val, sw, net.params, net._layout, *codes[:3], vws.acts,
                                    vws.aoff, vws.deltas, vws.doff, vws.rowloss, vws.rows, vws.sq,
                                    None)
                    history.val_loss.append(vt / val[0].shape[0])
                history.seconds.append(time.perf_counter() - t0)
                if self.verbose:
                    vl = f"  val_loss {history.val_loss[-1]:.6g}" if val is not None else ""
                    print(f"epoch {epoch + 1}/{self.epochs}  loss {history.loss[-1]:.6g}{vl}  "
                          f"{n / history.seconds[-1]:,.0f} samples/s", flush=True)
                if self.callback is not None and self.callback(epoch, history):
                    break
        return history

    def _diverged(self, status, steps, snapshot, run, epoch, history):
        """``steps``: the epoch's steps completed before the failing one."""
        net = self.network
        params, st1, st2, first, step0 = snapshot
        if status == K.PARAMS_NOT_FINITE:
            # the failing update already wrote: go back to the snapshot (the epoch's start, or
            # where it resumed) and redo the steps that succeeded since (bitwise the same, the
            # kernels being deterministic)
            for buf, saved in zip((net.params, *self._state), (params, st1, st2)):
                buf[...] = saved
            run(first, steps - first, step0)
        self.step = step0 + steps - first
        raise diverged_error(status, steps, epoch, self.learning_rate, history)


def weight_norms(net):
    """Each layer's ``‖(W, b)‖`` (float64)."""
    return [np.sqrt(np.sum(np.square(W, dtype=np.float64)) + np.sum(np.square(b, dtype=np.float64)))
            for W, b in zip(net.weights, net.biases)]


def diverged_error(status, steps, epoch, learning_rate, history):
    """The error for a step that failed with kernel ``status`` (what became non-finite) after
    ``steps`` good steps of ``epoch`` (0-based); the network has been left at its last finite
    parameters."""
    what = {K.LOSS_NOT_FINITE: "the loss", K.GRADIENT_NOT_FINITE: "the gradient",
            K.PARAMS_NOT_FINITE: "the updated parameters"}[status]
    err = TrainingDivergedError(
        f"training diverged: {what} became non-finite at step {steps + 1} of epoch {epoch + 1}; "
        f"the network keeps its last finite parameters. Lower the learning rate "
        f"(now {learning_rate:g}) or standardise the inputs.")
    err.history = history
    return err
