"""The ``fastbp`` command: ``train``, ``predict``, ``evaluate``, ``plot``, ``export``,
``compile``.

Exit codes: 0 success; 1 an internal error: a bug (please report it), printed with its
traceback; 2 bad usage or input that you can fix: one line on stderr says what is wrong, and
nothing is written; 3 training diverged; 130 / 143 stopped by SIGINT / SIGTERM after writing a
checkpoint (``--resume`` continues the run).
"""
import argparse
import signal
import sys
import traceback

from .._validation import BadInput
from .common import (EXIT_DIVERGED, EXIT_INTERNAL, EXIT_OK, EXIT_SIGNAL, EXIT_USAGE,  # noqa: F401
                     Stopped, UsageError, layers as _layers, positive_int as _positive_int)


def build_parser():
    p = argparse.ArgumentParser(
        prog="fastbp", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="fastbp: train multilayer perceptrons on the CPU, fast.",
        epilog=__doc__.split("\n", 2)[2])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    S = argparse.SUPPRESS
    t = sub.add_parser(
        "train", formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=S,
        help="train a network (with no --data: the 8x8 digits shipped with fastbp)",
        description=TRAIN_DOC)
    t.add_argument("--data", metavar="FILE", help="a table: .csv (also .tsv, compressed .gz, "
                   ".bz2, .xz, .zst), .parquet, .feather/.arrow, .npz (arrays X, y) or .npy (X; "
                   "--target y.npy)")
    t.add_argument("--target", metavar="COLUMN", help="the target column (default: the last; "
                   "rows without one are left out), or y.npy for .npy data")
    d = t.add_argument_group("table columns",
                             "each column's role is inferred and shown before training;\n"
                             "these override it (also keys of the --config file)")
    d.add_argument("--categorical", metavar="A,B", help="columns to treat as categories (e.g. "
                   "integer codes): one-hot, or an embedding when they have many levels")
    d.add_argument("--numeric", metavar="A,B", help="columns to treat as numbers")
    d.add_argument("--drop", metavar="A,B", help="columns to leave out")
    d.add_argument("--delimiter", metavar="CHAR", help="the CSV's delimiter (default: detected; "
                   "'tab' for a tab)")
    d.add_argument("--header", metavar="yes|no|auto", help="whether the CSV's first row names "
                   "the columns (default auto: detected; without one the columns are named 0, "
                   "1, ...)")
    d.add_argument("--encoding", metavar="NAME", help="the CSV's text encoding (default UTF-8, "
                   "or Latin-1 for a file that is not UTF-8)")
    d.add_argument("--max-onehot", type=int, metavar="N", help="a categorical column with at "
                   "most N levels is one-hot encoded, one with more is embedded (default 16)")
    d.add_argument("--min-frequency", type=int, metavar="N", help="categorical levels seen "
                   "fewer than N times in training are pooled into one 'other' level (default 5)")
    t.add_argument("--layers", type=_layers, metavar="64,64", help="hidden layer sizes (default 64)")
    t.add_argument("--activation", metavar="NAME[,NAME...]",
                   help="hidden activation: relu, leaky_relu, sigmoid, tanh, identity (default "
                        "relu), or one per hidden layer, e.g. relu,tanh")
    t.add_argument("--loss", help="cross_entropy, binary_cross_entropy, squared_error, poisson "
                   "(default: inferred from the target)")
    t.add_argument("--optimizer", help="sgd, momentum, nesterov, adam, adamw, rmsprop (default adam)")
    t.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    t.add_argument("--init", help="initial weights: glorot_uniform (default), glorot_normal, "
                   "he_uniform, he_normal, normal, auto (He for relu-like activations)")
    t.add_argument("--batch-size", type=_positive_int, help="mini-batch size (default 32)")
    t.add_argument("--epochs", type=_positive_int, help="epochs at most (default 500; early "
                   "stopping ends most runs long before)")
    t.add_argument("--seed", type=int, help="seed of the weights, split and shuffles (default 0)")
    t.add_argument("--dtype", choices=["float32", "float64"], help="default float32")
    t.add_argument("--validation-split", type=float, metavar="FRACTION",
                   help="held-out fraction for validation loss and the final metric (default 0.25; 0: none)")
    t.add_argument("--threads", type=_positive_int, help="compute threads (default: NUMBA_NUM_THREADS)")
    n = t.add_argument_group("network structure",
                             "also keys of the --config file (skips, normalization, dropout,\n"
                             "activation), and part of the run's settings, which --resume keeps;\n"
                             "a comma list gives one entry per hidden layer (--layers)")
    n.add_argument("--skips", metavar="residual|I:J,...",
                   help="skip connections a_j += a_i (after layer j's dropout): 'residual' "
                        "(every j-1:j whose widths match) or pairs such as 0:2,1:3, the "
                        "activations numbered like the layer sizes (0 the input, k hidden "
                        "layer k's output; the output layer takes none), equal widths only")
    n.add_argument("--normalization", metavar="batch|layer[,...]",
                   help="normalise each hidden layer's pre-activation: 'batch' (BatchNorm1d: "
                        "the batch's statistics in training, running ones in inference; not "
                        "under MPI, and no batch of one row) or 'layer' (LayerNorm), or one per "
                        "hidden layer with 'none', e.g. batch,none,layer (default none)")
    n.add_argument("--dropout", metavar="P[,P...]",
                   help="inverted dropout probability after each hidden layer's activation, in "
                        "training only, in [0, 1) (default 0), or one per hidden layer, e.g. "
                        "0.2,0")
    c = t.add_argument_group("training controls",
                             "also keys of the --config file (clip_norm, schedule, ...), and "
                             "part of\nthe run's settings, which --resume keeps")
    c.add_argument("--clip-norm", type=float, metavar="C",
                   help="clip the gradient of all parameters together to norm C before each "
                        "update (torch's clip_grad_norm_)")
    c.add_argument("--schedule", metavar="SPEC",
                   help="learning-rate schedule: cosine[:ETA_MIN] (over --epochs), "
                        "step:STEP_SIZE[:GAMMA] (GAMMA default 0.1), multistep:10,20[:GAMMA], "
                        "exponential:GAMMA, onecycle[:MAX_LR] (per mini-batch; MAX_LR default "
                        "--lr), plateau[:FACTOR[:PATIENCE]] (on the validation loss; default "
                        "0.1, 10)")
    c.add_argument("--early-stopping", metavar="PATIENCE|auto|none",
                   help="stop when the validation loss has not improved for PATIENCE epochs "
                        "and keep the best epoch's parameters (needs --validation-split > 0); "
                        "default auto: 30 with a validation split, none without")
    c.add_argument("--weight-decay", metavar="L2|auto",
                   help="L2 penalty added to the gradient of every parameter (torch's "
                        "weight_decay; decoupled for adamw); default auto: 4 / the training "
                        "rows")
    c.add_argument("--min-delta", type=float, metavar="D",
                   help="early stopping: an improvement must exceed D (default 0)")
    c.add_argument("--class-weight", metavar="balanced|CLASS:W,...",
                   help="weigh the loss by class: 'balanced' (n_samples / (n_classes * count)) "
                        "or pairs such as 0:1,1:5 with the labels of the data (others weigh 1)")
    c.add_argument("--sample-weight", metavar="COLUMN|FILE.npy",
                   help="per-sample weights of the loss: a column of the CSV/Parquet data (or "
                        "an array of the .npz; not a feature then), or a .npy file with one "
                        "weight per row")
    t.add_argument("--out", metavar="DIR", help="write model.npz, history.jsonl, metrics.json, "
                   "checkpoint.npz (and training.png) here")
    t.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    t.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                   help="write the checkpoint every N epochs (default 1)")
    t.add_argument("--config", metavar="FILE.toml", help="settings with the flags' names "
                   "(batch_size or batch-size); flags given on the command line win")
    t.add_argument("--no-plot", dest="plot", action="store_false", help="do not draw training.png")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress")

    pr = sub.add_parser("predict", help="predictions of a saved model",
                        description="Write the model's predictions for the rows of --data, its "
                                    "columns found by name (any order; other columns, the "
                                    "target among them, are ignored): class labels as in the "
                                    "training data for a classifier, values in the target's "
                                    "units for a regressor, with a header.")
    pr.add_argument("--model", required=True, metavar="DIR|FILE",
                    help="a run directory of fastbp train (or its model.npz)")
    pr.add_argument("--data", required=True, metavar="FILE")
    pr.add_argument("--out", metavar="FILE", help=".csv or .parquet (a header; the labels in "
                    "their own type), or .npy (default: CSV on stdout)")
    pr.add_argument("--proba", action="store_true", help="also one column of probabilities "
                    "per class (proba_LABEL)")
    pr.add_argument("--id", metavar="COLUMN", help="copy this column of --data through, first")
    pr.add_argument("--target", metavar="COLUMN", help=argparse.SUPPRESS)
    pr.add_argument("--delimiter", metavar="CHAR", help="the CSV's delimiter (default: detected)")

    ev = sub.add_parser("evaluate", help="metrics of a saved model on data",
                        description="Print the model's metrics on --data (which holds the "
                                    "target column; rows without one are left out) as JSON: "
                                    "accuracy, balanced_accuracy, f1_macro, log_loss, roc_auc "
                                    "(one-vs-rest macro for several classes) and "
                                    "confusion_matrix for a classifier; mse, rmse, mae, r2 in "
                                    "the target's units for a regressor; loss and n.")
    ev.add_argument("--model", required=True, metavar="DIR|FILE",
                    help="a run directory of fastbp train (or its model.npz)")
    ev.add_argument("--data", required=True, metavar="FILE")
    ev.add_argument("--target", metavar="COLUMN", help="the target column, when it is named "
                    "differently than in training")
    ev.add_argument("--delimiter", metavar="CHAR", help="the CSV's delimiter (default: detected)")

    pl = sub.add_parser("plot", help="draw a run's loss, gradient norms, accuracy and learning "
                                     "rate (needs matplotlib)",
                        description="Draw DIR/history.jsonl into a PNG: training and validation "
                                    "loss per epoch, each layer's mean gradient norm on a log "
                                    "scale (vanishing or exploding gradients show at a glance), "
                                    "and, when the history has them, training and validation "
                                    "accuracy and the learning rate (when it changes).")
    pl.add_argument("dir", metavar="DIR")
    pl.add_argument("--out", metavar="FILE.png", help="default DIR/training.png")

    ex = sub.add_parser("export", help="write a saved model as ONNX (needs onnx)",
                        description="Write the model, its preprocessing included, as an ONNX "
                                    "file (opset 17, ai.onnx.ml 2) for onnxruntime or any "
                                    "other ONNX runtime: one input per column the model reads, "
                                    "named as the column, shape (batch, 1): DOUBLE for numbers "
                                    "and numeric categories (NaN: missing), STRING for text "
                                    "(\"\": missing); outputs \"label\" and \"probabilities\" "
                                    "for a classifier, \"prediction\" in the target's units "
                                    "for a regressor: what `fastbp predict` gives. A bare "
                                    "network's file (Network.save) has input \"input\" and "
                                    "output \"output\". Needs the onnx package: pip install "
                                    "\"fastbp[onnx]\" (onnx, and onnxruntime to run the file).")
    ex.add_argument("--model", required=True, metavar="FILE", help="model.npz (or its directory)")
    ex.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")

    co = sub.add_parser("compile", help="compile the kernels into the cache (e.g. when building "
                                        "a container image)",
                        description="Compile every kernel that training, prediction and "
                                    "gradients can run, for each --dtype, into numba's on-disk "
                                    "cache (the installed package's __pycache__, or "
                                    "NUMBA_CACHE_DIR), so that later processes start warm. "
                                    "Run it once where the jobs will run, or in the image: "
                                    "RUN fastbp compile.")
    co.add_argument("--dtype", default="float32,float64",
                    help="float32, float64 or both, comma-separated (default both)")
    co.add_argument("--quiet", action="store_true", help="print nothing")
    return p


TRAIN_DOC = """\
Train an MLP by mini-batch backpropagation and write the results to --out DIR:

  DIR/model.npz       the trained network (fastbp.load)
  DIR/history.jsonl   one JSON line per epoch: loss, val_loss, accuracy and val_accuracy (for
                      a classifier), learning_rate, grad_norm and weight_norm per layer, seconds
  DIR/metrics.json    final loss, validation metric, classes, timings, the run's settings;
                      best_epoch and stopped_early with --early-stopping
  DIR/checkpoint.npz  parameters, optimizer state, RNG state, epoch and history, written
                      atomically every --checkpoint-every epochs and on SIGTERM/SIGINT
  DIR/training.png    the curves (when matplotlib is installed)

With no --data it trains on the 8x8 handwritten digits shipped with fastbp. --data takes a table
(CSV, Parquet, Feather, .npz/.npy): each column's role (numeric, boolean, categorical, dropped)
is inferred and shown before training, and the fitted preprocessing (standardising, missing
values, one-hot or embedded categories) is saved with the model. The loss is inferred from the
target when --loss is omitted: text, booleans and whole numbers with at most 20 distinct values
train a softmax classifier (cross_entropy), anything else a regressor (squared_error).

Training controls, e.g. `fastbp train --schedule cosine --clip-norm 1 --early-stopping 5`:
--schedule sets the learning rate of each epoch (onecycle: of each mini-batch), --clip-norm
clips the gradient, --early-stopping ends the run when the validation loss stops improving
(the model is then the best epoch's), --class-weight and --sample-weight weigh the loss.
With --schedule cosine or onecycle (laid out over --epochs), --resume keeps --epochs.

Network structure, e.g. `fastbp train --layers 64,64 --skips residual --normalization batch
--dropout 0.1 --activation relu,tanh`: skip connections, batch or layer normalisation and
dropout per hidden layer, kept in model.npz (fastbp.load, predict and evaluate read it back).
A bad spec (a skip between layers of different widths, an unknown normalisation, a dropout
outside [0, 1), a list whose length is not the number of hidden layers) is exit 2, as is
batch normalisation under mpiexec or with a batch of one row.

A run stopped by SIGTERM or SIGINT finishes its current step (within 32 steps), writes the
checkpoint and exits with 143 or 130; `fastbp train --out DIR --resume` continues it, and the final model is bitwise
identical to an uninterrupted run (also after SIGKILL, from the last checkpoint).

Under `mpiexec -n K fastbp train ...` every rank trains on its share of each mini-batch and the
gradients are summed with MPI (needs mpi4py): see README, "Scale-out with MPI"."""


def _together(comm):
    """Under MPI, wait for every rank before exiting with an error code: a launcher kills the
    other ranks when one exits so, and rank 0 may still be writing the checkpoint or the
    message."""
    if comm is not None:
        comm.Barrier()


# -- entry point --------------------------------------------------------------------------------
def main(argv=None):
    args = build_parser().parse_args(argv)
    from ..model.trainer import TrainingDivergedError
    comm = None
    try:
        if args.command == "train":
            from ..distributed import world
            from .train import train
            comm = world()
            return train(args, comm)
        if args.command == "predict":
            from .predict import predict
            return predict(args)
        if args.command == "evaluate":
            from .predict import evaluate
            return evaluate(args)
        if args.command == "export":
            from .export import export
            return export(args)
        if args.command == "compile":
            from .compile import compile_kernels
            return compile_kernels(args)
        from .plot import plot
        return plot(args)
    except Stopped as e:                     # every rank stops together: one says it
        if comm is None or comm.Get_rank() == 0:
            print(f"fastbp: stopped by signal {e.signum}; checkpoint written, resume with "
                  f"--resume", file=sys.stderr)
        _together(comm)
        return EXIT_SIGNAL[e.signum]
    except TrainingDivergedError as e:       # the ranks see the same sums: they diverge together
        if comm is None or comm.Get_rank() == 0:
            print(f"fastbp: {e}", file=sys.stderr)
        _together(comm)
        return EXIT_DIVERGED
    except BadInput as e:
        print(f"fastbp: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:                         # outside training (its signal handler)
        print("fastbp: interrupted", file=sys.stderr)
        return EXIT_SIGNAL[signal.SIGINT]
    except Exception:
        print("fastbp: internal error (a bug: please report it)", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
