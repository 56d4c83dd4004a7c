"""Trainer: configuration, validation, shuffling, history, callbacks and resumable state, over
the engine's one epoch loop (:class:`fastbp.engine.EpochRunner`)."""
import time
import warnings

import numpy as np

from .. import engine
from .._validation import (InputError, InputTypeError, check_choice, check_float, check_int,
                           check_targets, check_weights)
from ..engine import Codes
from ..kernels.losses import LOSSES
from ..kernels.optimizers import OPTIMIZERS
from ..schedules import Schedule
from . import modelfile
from .network import Network


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss, gradient or parameter.  The network holds the last
    finite parameters (those before the failing step)."""


class History:
    """Per-epoch record of a fit.

    Attributes
    ----------
    loss : list of float
        Mean per-sample training loss of each epoch (accumulated over its mini-batches, as the
        weights change, like scikit-learn's ``loss_curve_``; the weighted mean with class or
        sample weights).
    val_loss : list of float
        Mean validation loss after each epoch (empty without validation data; never weighted).
    accuracy : list of float
        Cross-entropy and binary cross-entropy: the fraction of correct predictions of each
        epoch, accumulated over its mini-batches as the weights change (like the loss;
        unweighted).  Binary cross-entropy with several outputs: the mean over the outputs.
        Empty for the other losses.
    val_accuracy : list of float
        The same on the validation data, measured after each epoch.
    grad_norm : ndarray (epochs, layers)
        Mean over the epoch's steps of each layer's gradient norm ``‖(∂E/∂W, ∂E/∂b)‖`` (γ and β
        included; the first layer's includes the embedding tables).
    weight_norm : ndarray (epochs, layers)
        Each layer's parameter norm ``‖(W, b)‖`` at the end of the epoch (the same groups).
    seconds : list of float
        Wall time of each epoch.
    learning_rate : list of float
        The learning rate of each epoch (the schedule's, when the trainer has one; a per-step
        schedule's rate of the epoch's first step).
    best_epoch : int or None
        Early stopping: the index into ``val_loss`` of the best epoch of this fit (None when
        no epoch of this fit improved on the best so far).
    stopped_early : bool
        Early stopping ended the fit (and, with ``restore_best``, put back the parameters of
        the best epoch).
    """

    def __init__(self, n_layers):
        self.interrupted = False    # a fit stopped mid-epoch (see Trainer.fit's ``stop``)
        self.loss, self.val_loss, self.seconds = [], [], []
        self.accuracy, self.val_accuracy = [], []
        self.learning_rate = []     # the rate of each epoch
        self.best_epoch = None      # early stopping: index into val_loss of the best epoch
        self.stopped_early = False
        self._grad, self._weight = [], []
        self._n_layers = n_layers
        self.compile_seconds = 0.0  # compiling (or loading from the cache) before epoch 1

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
    schedule : a :mod:`fastbp.schedules` object or None
        The learning rate of each epoch, stepped after it as torch.optim.lr_scheduler steps
        (ReduceLROnPlateau on the validation loss, else the training loss).
    early_stopping : int >= 1 or None
        Patience: stop when the validation loss has not improved by more than ``min_delta`` on
        the best so far for this many epochs (needs validation data); ``restore_best`` then
        puts back the parameters of the best epoch.
    clip_norm : float > 0 or None
        Before every update, scale the gradient of all parameters together as
        ``torch.nn.utils.clip_grad_norm_(max_norm=clip_norm)`` does: by
        ``clip_norm / (‖g‖ + 1e-6)`` when that is below 1 (``history.grad_norm`` keeps the
        norms before clipping).
    class_weight : None, "balanced", dict {class: weight} or array
        Cross-entropy (one weight per output class) and binary cross-entropy with one output
        (classes 0 and 1): each batch's loss is the weighted mean ``Σ wᵢ·ℓᵢ / Σ wᵢ`` with
        ``wᵢ`` the weight of sample i's class, as ``torch.nn.CrossEntropyLoss(weight=...)``;
        classes missing from a dict weigh 1; ``"balanced"`` is scikit-learn's
        ``n_samples / (n_classes · bincount(y))`` over the classes present in each fit's
        ``y``.  Multiplies ``fit``'s ``sample_weight``.  Validation losses are unweighted.

    Optimizer state and the shuffling generator persist across :meth:`fit` calls, so two fits of
    5 epochs equal one of 10.
    """

    STOP_STEPS = engine.STOP_STEPS   # steps per compiled call when fit polls ``stop``

    def __init__(self, network, loss="cross_entropy", optimizer="adam", learning_rate=1e-3,
                 batch_size=32, epochs=10, shuffle=True, seed=None, momentum=0.9, beta1=0.9,
                 beta2=0.999, eps=1e-8, weight_decay=0.0, verbose=False, callback=None,
                 schedule=None, early_stopping=None, min_delta=0.0, restore_best=True,
                 clip_norm=None, class_weight=None):
        if not isinstance(network, Network):
            raise InputTypeError(f"network must be a fastbp.Network; got {type(network).__name__}")
        self.network = network
        self.loss = network.loss_name(loss)
        self.optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
        self.learning_rate = check_float("learning_rate", learning_rate, 0, None, low_open=True)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size)
        self.epochs = check_int("epochs", epochs)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise InputTypeError(f"shuffle must be True or False; got {shuffle!r}")
        self.shuffle = bool(shuffle)
        self.momentum = check_float("momentum", momentum, 0, 1, high_open=True)
        self.beta1 = check_float("beta1", beta1, 0, 1, high_open=True)
        self.beta2 = check_float("beta2", beta2, 0, 1, high_open=True)
        self.eps = check_float("eps", eps, 0, None, low_open=True)
        self.weight_decay = check_float("weight_decay", weight_decay, 0, None)
        if callback is not None and not callable(callback):
            raise InputTypeError("callback must be callable or None")
        if schedule is not None and not isinstance(schedule, Schedule):
            raise InputTypeError(f"schedule must be a fastbp.schedules object (StepLR, "
                                 f"CosineAnnealingLR, ...) or None; got {schedule!r}")
        self.early_stopping = (None if early_stopping is None
                               else check_int("early_stopping", early_stopping))
        self.min_delta = check_float("min_delta", min_delta, 0, None)
        if not isinstance(restore_best, (bool, np.bool_)):
            raise InputTypeError(f"restore_best must be True or False; got {restore_best!r}")
        self.restore_best = bool(restore_best)
        self.clip_norm = (None if clip_norm is None
                          else check_float("clip_norm", clip_norm, 0, None, low_open=True))
        self.class_weight = _class_weight(class_weight, self.loss, network.layer_sizes[-1])
        self.verbose, self.callback, self.seed = bool(verbose), callback, seed
        self.schedule = schedule
        if schedule is not None:
            schedule._start(self.learning_rate)
        # early stopping: the best validation loss so far, epochs since, its parameters
        self._best = {"loss": float("inf"), "bad": 0}
        self._best_params = None
        self._rng = np.random.default_rng(seed)
        # dropout's key (with the step, the sample and the unit): from the seed, or drawn
        self.dropout_seed = int(np.random.SeedSequence(
            seed if isinstance(seed, (int, np.integer)) else None).generate_state(1, np.uint64)[0]
            >> np.uint64(1))
        self._opt = engine.Optimizer(OPTIMIZERS[self.optimizer], network.params.shape[0],
                                     network.dtype, self.learning_rate, self.momentum,
                                     self.beta1, self.beta2, self.eps, self.weight_decay)
        self._pending = None   # an epoch interrupted by ``stop`` (an engine.Pending)

    @property
    def step(self):
        """Optimizer steps taken (PyTorch's step count)."""
        return self._opt.step

    def state(self):
        """Everything a later run needs to continue this one bitwise: ``(arrays, info)`` with
        ``arrays`` = parameters and optimizer buffers (copies) and ``info`` = a JSON-able dict
        (optimizer step, shuffling generator state, the configuration that must not change,
        an unfinished epoch, and the versions and CPU it was made with)."""
        s1, s2 = self._opt.state
        arrays = {"params": self.network.params.copy(), "state1": s1.copy(), "state2": s2.copy(),
                  "stats": self.network._st.stats.copy()}
        info = {"step": self.step, "rng": self._rng.bit_generator.state,
                "dropout_seed": self.dropout_seed,
                "config": self._config(), "pending": None, "build": modelfile.build_info(),
                "schedule": None if self.schedule is None else self.schedule.state(),
                "best": dict(self._best)}
        if self._best_params is not None:
            arrays["best_params"] = self._best_params.copy()
        if self._pending is not None:
            p = self._pending
            arrays["pending_perm"], arrays["pending_gnorm"] = p.perm.copy(), p.gnorm.copy()
            info["pending"] = {"done": p.done, "total": p.total, "n": p.n, "batch": p.batch,
                               "correct": p.correct}
        return arrays, info

    def load_state(self, arrays, info):
        """Restore what :meth:`state` returned (the trainer must be configured the same way).

        Everything is checked before anything changes: a state that does not fit this trainer,
        or a damaged one (an unfinished epoch whose order is not a permutation, non-finite
        parameters), is refused with a ValueError.  A state made with other numba/LLVM versions
        or CPU features resumes with a warning: valid, but no longer bitwise identical."""
        if not isinstance(info, dict) or not hasattr(arrays, "keys"):
            raise InputTypeError("load_state takes the (arrays, info) pair that state() returns")
        if info.get("config") != self._config():
            raise InputError(f"the saved training state was made with {info.get('config')}, "
                             f"not {self._config()}")
        net = self.network
        targets = (("params", net.params), ("state1", self._opt.state[0]),
                   ("state2", self._opt.state[1]), ("stats", net._st.stats))
        saved = {}
        for name, buf in targets:
            if name not in arrays:
                raise InputError(f"the saved training state has no {name!r} array")
            a = np.asarray(arrays[name])
            if a.shape != buf.shape or a.dtype != buf.dtype:
                raise InputError(f"saved {name} has shape {a.shape} and dtype {a.dtype}; "
                                 f"this trainer needs {buf.shape} {buf.dtype}")
            if not np.isfinite(a).all():
                raise InputError(f"saved {name} contains NaN or inf: the state is damaged")
            saved[name] = a
        step = info.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise InputError(f"the saved optimizer step must be an integer >= 0; got {step!r}")
        dseed = info.get("dropout_seed", self.dropout_seed)
        if isinstance(dseed, bool) or not isinstance(dseed, int) or not 0 <= dseed < 2 ** 63:
            raise InputError(f"the saved dropout seed is invalid: {dseed!r}")
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = info["rng"]
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"the saved shuffling generator state is invalid: {e}") from None
        pending = self._check_pending(arrays, info.get("pending"))
        try:
            raw = info.get("best") or {"loss": float("inf"), "bad": 0}
            best = {"loss": float(raw["loss"]), "bad": int(raw["bad"])}
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"the saved early-stopping state is invalid: {e}") from None
        best_params = arrays.get("best_params")
        if best_params is not None:
            best_params = np.asarray(best_params)
            n_best = net.params.shape[0] + net._st.stats.shape[0]
            if best_params.shape != (n_best,) or best_params.dtype != net.params.dtype:
                raise InputError("the saved best parameters do not fit this network")
        if self.schedule is not None:
            self.schedule.load_state(info.get("schedule") or {})
        for d in modelfile.build_differences(info.get("build")):
            warnings.warn(f"resuming a state saved with other software or CPU ({d}): training "
                          f"stays valid but is no longer bitwise identical to an uninterrupted "
                          f"run", RuntimeWarning, stacklevel=2)
        for name, buf in targets:
            buf[...] = saved[name]
        self._rng = rng
        self._opt.step = step
        self.dropout_seed = dseed
        self._pending = pending
        self._best = best
        self._best_params = None if best_params is None else best_params.copy()

    def _check_pending(self, arrays, p):
        """The unfinished epoch of a saved state as an engine.Pending (None: none), checked:
        the kernels trust its order, so a damaged one must not reach them."""
        if not p:
            return None

        def whole(name, lo):
            v = p.get(name) if isinstance(p, dict) else None
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise InputError(f"the saved unfinished epoch's {name} must be an integer >= "
                                 f"{lo}; got {v!r}")
            return v

        n, batch, done = whole("n", 1), whole("batch", 1), whole("done", 0)
        if batch != (n if self.batch_size is None else min(self.batch_size, n)):
            raise InputError(f"the saved unfinished epoch has batches of {batch}, not this "
                             f"trainer's batch_size={self.batch_size}")
        if done >= -(-n // batch):
            raise InputError(f"the saved unfinished epoch has done {done} of its "
                             f"{-(-n // batch)} steps")
        total = p.get("total")
        if isinstance(total, bool) or not isinstance(total, (int, float)) or not np.isfinite(total):
            raise InputError(f"the saved unfinished epoch's loss sum is not a number: {total!r}")
        perm = np.asarray(arrays.get("pending_perm", ()))
        if (perm.ndim != 1 or perm.shape[0] != n or perm.dtype.kind not in "iu"
                or not np.array_equal(np.sort(perm), np.arange(n))):
            raise InputError(f"the saved unfinished epoch's order is not a permutation of its "
                             f"{n} samples: the state is damaged")
        correct = p.get("correct", 0.0)
        if (isinstance(correct, bool) or not isinstance(correct, (int, float))
                or not 0 <= correct <= n):
            raise InputError(f"the saved unfinished epoch's correct count is invalid: "
                             f"{correct!r}")
        gnorm = np.asarray(arrays.get("pending_gnorm", ()), np.float64)
        if gnorm.shape != (self.network.n_layers,) or not np.isfinite(gnorm).all():
            raise InputError(f"the saved unfinished epoch's gradient norms must be "
                             f"{self.network.n_layers} finite numbers; got shape {gnorm.shape}")
        return engine.Pending(perm.astype(np.int64), done, float(total), gnorm, n, batch,
                              float(correct))

    def _config(self):
        net = self.network
        return {"layer_sizes": net.layer_sizes, **net._structure_meta(),
                "output_activation": net.output_activation, "dtype": net.dtype.name,
                "loss": self.loss, "optimizer": self.optimizer,
                "learning_rate": self.learning_rate, "batch_size": self.batch_size,
                "shuffle": self.shuffle, "momentum": self.momentum, "beta1": self.beta1,
                "beta2": self.beta2, "eps": self.eps, "weight_decay": self.weight_decay,
                "schedule": repr(self.schedule), "early_stopping": self.early_stopping,
                "min_delta": self.min_delta, "clip_norm": self.clip_norm,
                "class_weight": (self.class_weight if self.class_weight is None
                                 or isinstance(self.class_weight, str)
                                 else self.class_weight.tolist())}

    def fit(self, X, y, validation_data=None, sample_weight=None, stop=None, reducer=None):
        """Train the network in place from its current parameters; returns a :class:`History`.

        ``sample_weight`` (one finite weight >= 0 per sample, not all zero): each batch's loss
        is the weighted mean ``Σ wᵢ·ℓᵢ / Σ wᵢ`` (times the class weights, when the trainer
        has them; a batch whose weights are all zero changes no gradient).  The validation
        loss is not weighted.

        ``stop``, when given, is polled every :attr:`STOP_STEPS` steps; when it returns True the
        fit returns at once, mid-epoch, with ``history.interrupted`` set.  The unfinished epoch
        is kept (its order, position and partial sums: in :meth:`state` too), and the next
        ``fit`` finishes it before starting a new one: stopped and resumed, the result is
        bitwise that of an uninterrupted fit.

        ``reducer``: sums each step's gradient over several processes (see
        :class:`fastbp.distributed.DistributedTrainer`, which passes it); ``stop`` and the
        callback's answer are then agreed by all of them, and only the first prints.

        Raises
        ------
        TrainingDivergedError
            When a loss, gradient or parameter becomes non-finite; the network keeps the last
            finite parameters and ``exc.history`` holds the completed epochs.
        """
        net = self.network
        sizes = net.layer_sizes
        X = net._check_X(X)
        Yf, Yi = check_targets(y, self.loss, sizes[-1], X.shape[0], net.dtype)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise InputTypeError("validation_data must be a pair (X_val, y_val)")
            Xv = net._check_X(validation_data[0], name="X_val")
            val = (Xv,) + check_targets(validation_data[1], self.loss, sizes[-1], Xv.shape[0],
                                        net.dtype, name="y_val")
        if self.early_stopping is not None and val is None:
            raise InputError("early_stopping needs validation_data (it watches the validation "
                             "loss)")
        sw = self._sample_weights(sample_weight, Yf, Yi, X.shape[0])
        n = X.shape[0]
        batch = n if self.batch_size is None else min(self.batch_size, n)
        n_steps = -(-n // batch)
        check_batches(net._st.batch_norm, n, batch)
        p = self._pending
        if p is not None and (p.n != n or p.batch != batch):
            raise InputError(f"an interrupted epoch over {p.n} samples in batches of {p.batch} "
                             f"is pending; finish it with the same data")
        per_step = self.schedule is not None and self.schedule.per_step
        if per_step:
            need = self.epochs * n_steps - (0 if p is None else p.done)
            left = (self.epochs * n_steps if self.schedule._total is None
                    else self.schedule.steps_left())
            if need > left:
                raise InputError(f"{self.schedule!r} has {left} of its steps left; this fit "
                                 f"needs up to {need} ({self.epochs} epochs of {n_steps} "
                                 f"steps)")
            self.schedule._resolve(self.epochs * n_steps)
        codes = Codes(net._out, LOSSES[self.loss])
        accuracy = self.loss in ("cross_entropy", "binary_cross_entropy")
        if val is not None:     # compiled aside with the kernels, on a cold start
            engine.expect_calls(net.dtype, "evaluate_out" if accuracy else "evaluate")
        runner = engine.EpochRunner(net.params, net._st, codes, self._opt, X, Yf, Yi, batch,
                                    sw=sw, reducer=reducer, clip=self.clip_norm or 0.0,
                                    accuracy=accuracy, seed=self.dropout_seed)
        history = History(net.n_layers)
        history.compile_seconds = runner.compile_seconds
        t0 = time.perf_counter()
        vws = vout = None
        runner.ready()          # (the helpers done: their validation pass is in the cache)
        if val is not None:     # compiled (or loaded) here, not in epoch 1's time
            vws = engine.inference_workspace(net._st, val[0].shape[0], net.dtype)
            vout = np.empty((val[0].shape[0], sizes[-1]), net.dtype) if accuracy else None
            engine.evaluate(net.params, net._st, codes, val[0][:0], val[1][:0], val[2],
                            out=None if vout is None else vout[:0], ws=vws)
            if accuracy:
                engine.accuracy(vout[:0], val[1][:0], val[2][:0], codes)
        history.compile_seconds += time.perf_counter() - t0
        rates = np.empty(n_steps) if per_step else None
        say = self.verbose and (reducer is None or reducer.rank == 0)
        for epoch in range(self.epochs):
            t0 = time.perf_counter()
            pending, self._pending = self._pending, None
            # a fresh draw, independent of the last: fits can be split
            order = self._rng.permutation(n) if pending is None and self.shuffle else None
            first = 0 if pending is None else pending.done
            if per_step:    # the whole epoch's (a pending epoch's done steps are not read)
                rates[:] = self.schedule.rates(self.schedule.last_epoch - first, n_steps)
                self._opt.learning_rate = rates[first]
                rate = float(rates[0])
            else:
                if self.schedule is not None:
                    self._opt.learning_rate = self.schedule.rate
                rate = self._opt.learning_rate
            step0 = self._opt.step
            try:
                result = runner.run(order, pending, stop, rates)
            except engine.Diverged as e:
                raise diverged_error(e, epoch, rate, history) from None
            finally:
                if per_step:
                    self.schedule.advance(self._opt.step - step0)
            if result.pending is not None:
                self._pending = result.pending
                history.interrupted = True
                return history
            history.loss.append(result.loss)
            history.learning_rate.append(rate)
            history._grad.append(result.grad_norm)
            history._weight.append(weight_norms(net))
            if accuracy:
                history.accuracy.append(result.accuracy)
            if val is not None:
                vt = engine.evaluate(net.params, net._st, codes, *val, out=vout, ws=vws)
                history.val_loss.append(vt / val[0].shape[0])
                if accuracy:
                    history.val_accuracy.append(engine.accuracy(vout, val[1], val[2], codes))
            if self.schedule is not None and not per_step:
                self.schedule.step(history.val_loss[-1] if val is not None else history.loss[-1])
            stop_early = self._watch(history) if self.early_stopping is not None else False
            history.seconds.append(time.perf_counter() - t0)
            if say:
                vl = f"  val_loss {history.val_loss[-1]:.6g}" if val is not None else ""
                print(f"epoch {epoch + 1}/{self.epochs}  loss {history.loss[-1]:.6g}{vl}  "
                      f"{n / history.seconds[-1]:,.0f} samples/s", flush=True)
            if stop_early:
                history.stopped_early = True
                if self.restore_best:
                    self.restore_best_epoch()
                break
            if self.callback is not None and runner.agree(self.callback(epoch, history)):
                break
        return history

    def restore_best_epoch(self):
        """Put back the parameters (and running statistics) of the best epoch so far, as early
        stopping does when it ends a fit: for a fit that used up its epochs first.  Returns
        whether there was one (early stopping with ``restore_best`` keeps it)."""
        if self._best_params is None:
            return False
        net = self.network
        n_p = net.params.shape[0]
        net.params[...] = self._best_params[:n_p]
        net._st.stats[...] = self._best_params[n_p:]
        return True

    def _sample_weights(self, sample_weight, Yf, Yi, n):
        """Each sample's weight (the network's dtype; None: unweighted): ``sample_weight``
        times its class's weight."""
        w = None if sample_weight is None else check_weights("sample_weight", sample_weight, n,
                                                             np.float64)
        cw = self.class_weight
        if cw is not None:
            labels = _labels(Yf, Yi, self.loss)
            if isinstance(cw, str):     # balanced
                counts = np.bincount(labels)
                present = counts > 0
                cw = np.where(present, n / (present.sum() * np.maximum(counts, 1)), 0.0)
            per_row = cw[labels]
            w = per_row if w is None else w * per_row
            if not w.any():
                raise InputError("the class and sample weights are zero for every sample: "
                                 "nothing would be learned")
        return None if w is None else w.astype(self.network.dtype)

    def _watch(self, history):
        """Early stopping after an epoch: True when the validation loss has not improved by
        more than ``min_delta`` on the best so far for ``early_stopping`` epochs."""
        loss = history.val_loss[-1]
        if loss < self._best["loss"] - self.min_delta:
            self._best = {"loss": loss, "bad": 0}
            history.best_epoch = len(history.val_loss) - 1
            if self.restore_best:       # the parameters, then the running statistics
                net = self.network
                self._best_params = np.concatenate([net.params, net._st.stats])
            return False
        self._best["bad"] += 1
        return self._best["bad"] >= self.early_stopping


def check_batches(batch_norm, n, batch, hint="change batch_size or drop a sample"):
    """Batch normalisation needs every batch of ``n`` samples in batches of ``batch`` to have
    more than one row (PyTorch refuses one too)."""
    if batch_norm and (batch == 1 or n % batch == 1):
        raise InputError(f"batch normalisation needs batches of more than one row: {n} samples "
                         f"in batches of {batch} leave a batch of one (PyTorch refuses it too); "
                         f"{hint}")


def weight_norms(net):
    """Each layer's ``‖(W, b, γ, β)‖`` (float64; its parameters are adjacent)."""
    return engine.layer_norms(net.params, net._st)


def diverged_error(e, epoch, learning_rate, history):
    """The error for the engine's :class:`~fastbp.engine.Diverged` ``e`` in ``epoch``
    (0-based); the network has been left at its last finite parameters."""
    err = TrainingDivergedError(
        f"training diverged: {e.what} became non-finite at step {e.steps + 1} of epoch "
        f"{epoch + 1}; the network keeps its last finite parameters. Lower the learning rate "
        f"(now {learning_rate:g}) or standardise the inputs.")
    err.history = history
    return err


def _class_weight(cw, loss, n_out):
    """The checked ``class_weight``: None, "balanced" or a float64 array, one per class."""
    if cw is None:
        return None
    if loss == "cross_entropy":
        n_classes = n_out
    elif loss == "binary_cross_entropy" and n_out == 1:
        n_classes = 2
    else:
        why = (f"binary cross-entropy with {n_out} outputs has several labels per sample (use "
               f"sample_weight)" if loss == "binary_cross_entropy" else f"the loss is {loss}")
        raise InputError(f"class_weight applies to cross_entropy, or binary_cross_entropy with "
                         f"one output; here {why}")
    if isinstance(cw, str):
        if cw != "balanced":
            raise InputError(f"class_weight must be 'balanced', a dict or an array; got {cw!r}")
        return cw
    if isinstance(cw, dict):
        out = np.ones(n_classes)
        for k, v in cw.items():
            if (isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer))
                    or not 0 <= k < n_classes):
                raise InputError(f"class_weight's keys must be classes 0..{n_classes - 1}; "
                                 f"got {k!r}")
            out[k] = check_float(f"class_weight[{k}]", v, 0, None)
        if not out.any():
            raise InputError("class_weight is zero for every class: nothing would be learned")
        return out
    return check_weights("class_weight", cw, n_classes, np.float64)


def _labels(Yf, Yi, loss, name="y"):
    """The class of each sample (int64), for class weights: hard labels only."""
    if Yi.shape[0] > 0:
        return Yi
    if loss == "binary_cross_entropy":
        if not np.all((Yf == 0) | (Yf == 1)):
            raise InputError(f"class_weight needs {name} to hold 0/1 labels; got other values")
        return Yf[:, 0].astype(np.int64)
    if not (np.all((Yf == 0) | (Yf == 1)) and np.all(Yf.sum(axis=1) == 1)):
        raise InputError(f"class_weight needs class labels: integers or one-hot rows; {name} "
                         f"holds probabilities")
    return np.argmax(Yf, axis=1)
