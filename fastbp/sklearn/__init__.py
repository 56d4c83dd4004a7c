"""scikit-learn drop-ins: :class:`MLPClassifier` and :class:`MLPRegressor`.

``from fastbp import MLPClassifier`` in place of ``from sklearn.neural_network import
MLPClassifier`` gives the same model: every constructor parameter with scikit-learn 1.9's name
and default, the same loss (with its L2 term ``alpha/2·Σ‖W‖²`` per batch, divided by the batch's
weight), the same initial weights for the same ``random_state``, the same update rules, shuffles,
batches, stopping rules, learning-rate schedules, warnings and fitted attributes.  What differs is
where the work happens: every mini-batch step of an epoch runs in one compiled call of fastbp's
kernels (scikit-learn runs NumPy per batch from Python), and lbfgs evaluates its loss and gradient
with the same kernels.

Differences a user may notice:

* ``activation`` also accepts ``"leaky_relu"`` (slope 0.01).
* Sparse input is accepted and converted to a dense array (the kernels are dense).
* Prediction runs in the model's dtype (float32 models predict float32 even for float64 input).
* The log-loss is computed from the logits (log-sum-exp, softplus) rather than from probabilities
  clipped at machine epsilon: identical except where a probability is below epsilon.
* Without early stopping, a training run whose loss, gradient or weights become non-finite
  stops at once with scikit-learn's ``ValueError`` ("Solver produced non-finite parameter
  weights ...") instead of running its remaining epochs on NaN and raising it at the end.
  With ``early_stopping=True`` it goes on as scikit-learn's does (scikit-learn issue 29504):
  every update is applied whatever its values, ``loss_curve_`` turns inf or NaN, the
  validation scores NaN (never counted as "no improvement"), and the best epoch's weights are
  restored at the end, so the fit succeeds unless NaN weights scored best (a classifier's NaN
  outputs still predict a class).  Past the first overflow the epochs run one compiled call
  per mini-batch.  Two traces of the record may differ: a float32 model's squared error is
  summed in float32 (scikit-learn's in the targets' float64), so it may overflow an epoch
  earlier; and when the first overflow is an update of an epoch's last mini-batch whose loss
  and gradient are finite (an extreme learning rate), that epoch's ``loss_curve_`` entry is
  NaN where scikit-learn records the finite loss.
* With ``early_stopping=True``, ``validation_loss_curve_`` holds the mean validation loss of every
  epoch (the data term of the loss, without the L2 term).

scikit-learn is an optional dependency: ``pip install "fastbp[sklearn]"``.
"""
from ._multilayer_perceptron import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
