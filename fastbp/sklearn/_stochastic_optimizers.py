"""The stochastic solvers' state (scikit-learn's ``_stochastic_optimizers.py``): SGD with
momentum (velocity form, Nesterov) and Adam, as scikit-learn updates them, over fastbp's flat
parameter buffer."""
from .. import engine
from ..kernels.optimizers import SK_ADAM, SK_NESTEROV, SK_SGD


class _Optimizer:
    """scikit-learn's SGDOptimizer/AdamOptimizer state over fastbp's flat parameter buffer."""

    def __init__(self, est, n, dtype):
        if est.solver == "sgd":
            self.code = SK_NESTEROV if est.nesterovs_momentum else SK_SGD
        else:
            self.code = SK_ADAM
        self.learning_rate_init = est.learning_rate_init
        self.lr_schedule = est.learning_rate
        self.power_t = est.power_t
        # the engine's buffers and step count (Adam's t); no weight decay: the L2 term is in
        # the gradient already
        self.engine = engine.Optimizer(self.code, n, dtype, float(est.learning_rate_init),
                                       est.momentum, est.beta_1, est.beta_2, est.epsilon)
        self.learning_rate = float(est.learning_rate_init)

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = value
        self.engine.learning_rate = value

    def iteration_ends(self, time_step):
        if self.code != SK_ADAM and self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        if self.code == SK_ADAM or self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False
