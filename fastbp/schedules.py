"""Learning-rate schedules for :class:`fastbp.Trainer`, stepped once per epoch exactly as
``torch.optim.lr_scheduler``'s classes of the same names are stepped after each epoch
(:class:`OneCycleLR`: after every mini-batch; the trainer hands the epoch's per-step rates to
the compiled epoch as one array, so no Python runs between steps).

A schedule is given the trainer's learning rate as its base rate when the trainer is made;
``rate`` is the rate of the coming epoch, and :meth:`Schedule.step` moves it on after an epoch
(``ReduceLROnPlateau`` takes that epoch's validation loss, else its training loss).  The state
that a resume needs (``state()`` / ``load_state()``) goes into the trainer's checkpoints, so a
stopped and resumed fit follows the same rates.
"""
import math
import numbers
from collections import Counter

from ._validation import InputError, InputTypeError, check_float, check_int

__all__ = ["Schedule", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR",
           "ReduceLROnPlateau", "OneCycleLR"]


class Schedule:
    """The base of the schedules: ``last_epoch`` and the current ``rate`` (torch's
    ``get_last_lr()``); subclasses define :meth:`_next` (torch's ``get_lr``).  ``per_step``:
    the schedule moves after every mini-batch (see :class:`OneCycleLR`), not after epochs."""

    per_step = False

    def __init__(self):
        self.base_rate = None
        self.rate = None
        self.last_epoch = 0

    def _start(self, base_rate):
        """Bind to a trainer's learning rate (torch: the scheduler's construction)."""
        self.base_rate = self.rate = float(base_rate)
        self.last_epoch = 0

    def step(self, metric=None):
        """After an epoch: the rate of the next one."""
        self.last_epoch += 1
        self.rate = float(self._next())

    def state(self):
        return {"last_epoch": self.last_epoch, "rate": self.rate, "base_rate": self.base_rate}

    def load_state(self, state):
        try:
            last, rate, base = int(state["last_epoch"]), float(state["rate"]), float(state["base_rate"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"invalid saved {type(self).__name__} state: {e}") from None
        if last < 0 or not (math.isfinite(rate) and rate >= 0 and math.isfinite(base)):
            raise InputError(f"invalid saved {type(self).__name__} state: {state!r}")
        self.last_epoch, self.rate, self.base_rate = last, rate, base

    def __repr__(self):
        # a function shows as its name: the text must not change between processes (it is part
        # of the trainer's configuration that a resume compares)
        args = ", ".join(f"{k}={getattr(v, '__qualname__', None) or v!r}"
                         if callable(v) else f"{k}={v!r}" for k, v in vars(self).items()
                         if k not in ("base_rate", "rate", "last_epoch") and not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _positive(name, value):
    return check_float(name, value, 0, None, low_open=True)


class StepLR(Schedule):
    """The rate times ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size, gamma=0.1):
        super().__init__()
        self.step_size = check_int("step_size", step_size)
        self.gamma = _positive("gamma", gamma)

    def _next(self):
        if self.last_epoch % self.step_size != 0:
            return self.rate
        return self.rate * self.gamma


class MultiStepLR(Schedule):
    """The rate times ``gamma`` at each epoch in ``milestones`` (a milestone listed twice
    multiplies twice, as in torch)."""

    def __init__(self, milestones, gamma=0.1):
        super().__init__()
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise InputTypeError(f"milestones must be a list of epochs; got {milestones!r}")
        self.milestones = [check_int(f"milestones[{i}]", m, minimum=1)
                           for i, m in enumerate(milestones)]
        ms = self.milestones
        self._counts = Counter(ms)
        self.gamma = _positive("gamma", gamma)

    def _next(self):
        if self.last_epoch not in self._counts:
            return self.rate
        return self.rate * self.gamma ** self._counts[self.last_epoch]


class ExponentialLR(Schedule):
    """The rate times ``gamma`` after every epoch."""

    def __init__(self, gamma):
        super().__init__()
        self.gamma = _positive("gamma", gamma)

    def _next(self):
        return self.rate * self.gamma


class CosineAnnealingLR(Schedule):
    """Cosine annealing from the base rate to ``eta_min`` over ``T_max`` epochs, in torch's
    recursive form (so the rates are torch's to the last bit, also past ``T_max``)."""

    def __init__(self, T_max, eta_min=0.0):
        super().__init__()
        self.T_max = check_int("T_max", T_max)
        self.eta_min = check_float("eta_min", eta_min, 0, None)

    def _next(self):
        e, T, lo = self.last_epoch, self.T_max, self.eta_min
        if (e - 1 - T) % (2 * T) == 0:
            return self.rate + (self.base_rate - lo) * (1 - math.cos(math.pi / T)) / 2
        return ((1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T))
                * (self.rate - lo) + lo)


class LambdaLR(Schedule):
    """The base rate times ``fn(epoch)``.  ``fn`` is not saved with the state: give the same
    function to the trainer that resumes."""

    def __init__(self, fn):
        super().__init__()
        if not callable(fn):
            raise InputTypeError(f"fn must be callable (epoch -> factor); got {fn!r}")
        self.fn = fn

    def _start(self, base_rate):
        super()._start(base_rate)
        self.rate = self._next()

    def _next(self):
        factor = self.fn(self.last_epoch)
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not math.isfinite(factor):
            raise InputError(f"LambdaLR's fn({self.last_epoch}) must return a finite number; "
                             f"got {factor!r}")
        return self.base_rate * float(factor)


class ReduceLROnPlateau(Schedule):
    """The rate times ``factor`` when the monitored loss (validation loss, else training loss)
    has not improved by a relative ``threshold`` for more than ``patience`` epochs (torch's
    defaults: ``threshold_mode="rel"``, no cooldown, ``min_lr=0``, ``eps=1e-8``)."""

    def __init__(self, factor=0.1, patience=10, threshold=1e-4, mode="min"):
        super().__init__()
        self.factor = check_float("factor", factor, 0, 1, low_open=True, high_open=True)
        self.patience = check_int("patience", patience, minimum=0)
        self.threshold = check_float("threshold", threshold, 0, None)
        if mode not in ("min", "max"):
            raise InputError(f"mode must be 'min' or 'max'; got {mode!r}")
        self.mode = mode
        self._best = math.inf if mode == "min" else -math.inf
        self._bad = 0

    def _start(self, base_rate):
        super()._start(base_rate)
        self._best = math.inf if self.mode == "min" else -math.inf
        self._bad = 0

    def _better(self, a):
        if self.mode == "min":
            return a < self._best * (1.0 - self.threshold)
        return a > self._best * (1.0 + self.threshold)

    def step(self, metric=None):
        current = float(metric)
        self.last_epoch += 1
        if self._better(current):
            self._best, self._bad = current, 0
        else:
            self._bad += 1
        if self._bad > self.patience:
            new = max(self.rate * self.factor, 0.0)
            if self.rate - new > 1e-8:
                self.rate = new
            self._bad = 0

    def state(self):
        return {**super().state(), "best": self._best, "bad": self._bad}

    def load_state(self, state):
        try:        # parsed before anything changes
            best, bad = float(state["best"]), int(state["bad"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"invalid saved ReduceLROnPlateau state: {e}") from None
        super().load_state(state)
        self._best, self._bad = best, bad


class OneCycleLR(Schedule):
    """The 1cycle policy, stepped after every mini-batch, as ``torch.optim.lr_scheduler.
    OneCycleLR`` with ``anneal_strategy="cos"``, ``three_phase=False`` and
    ``cycle_momentum=False``: cosine from ``max_lr / div_factor`` up to ``max_lr`` over the
    first ``pct_start`` of ``total_steps``, then down to ``max_lr / div_factor /
    final_div_factor``.  The trainer's ``learning_rate`` is not used (the schedule sets every
    rate).  ``total_steps=None``: the trainer's ``epochs`` times its steps per epoch, fixed at
    the first fit; a fit that would go beyond ``total_steps`` is refused before it starts
    (torch raises part-way)."""

    per_step = True

    def __init__(self, max_lr, total_steps=None, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4):
        super().__init__()
        self.max_lr = _positive("max_lr", max_lr)
        self.total_steps = None if total_steps is None else check_int("total_steps", total_steps)
        self.pct_start = check_float("pct_start", pct_start, 0, 1)
        self.div_factor = _positive("div_factor", div_factor)
        self.final_div_factor = _positive("final_div_factor", final_div_factor)
        self._total = self.total_steps

    def _start(self, base_rate):
        self.base_rate = float(base_rate)
        self.last_epoch = 0
        self._total = self.total_steps
        self.rate = self.max_lr / self.div_factor

    def _resolve(self, total):
        """``total_steps=None``: fixed by the first fit (epochs × steps per epoch)."""
        if self._total is None:
            self._total = int(total)

    def steps_left(self):
        return self._total - self.last_epoch

    def _lr(self, t):
        """torch's ``get_lr`` at step ``t`` (0-based), in its float64 arithmetic."""
        initial = self.max_lr / self.div_factor
        phases = ((float(self.pct_start * self._total) - 1, initial, self.max_lr),
                  (self._total - 1, self.max_lr, initial / self.final_div_factor))
        start_step = 0.0
        for i, (end_step, lo, hi) in enumerate(phases):
            if t <= end_step or i == len(phases) - 1:
                if end_step == start_step:      # a phase of no length (torch: ZeroDivisionError)
                    return hi
                pct = (t - start_step) / (end_step - start_step)
                return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1)
            start_step = end_step

    def rates(self, first, k):
        """The rates of steps ``first .. first + k`` (0-based; a list of float)."""
        return [self._lr(first + i) for i in range(k)]

    def advance(self, k):
        """After ``k`` mini-batch steps."""
        self.last_epoch += k
        self.rate = self._lr(self.last_epoch)

    def step(self, metric=None):
        """Per-epoch stepping does nothing: the trainer calls :meth:`advance` per batch."""

    def state(self):
        return {**super().state(), "total": self._total}

    def load_state(self, state):
        total = state.get("total") if isinstance(state, dict) else None
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise InputError(f"invalid saved OneCycleLR state: total steps {total!r}")
        last = state.get("last_epoch")
        if isinstance(last, int) and last > total:
            raise InputError(f"invalid saved OneCycleLR state: step {last} of {total}")
        super().load_state(state)
        self._total = total
