"""``fastbp train``, by concern:

* settings and resume: defaults, then ``--config``, then the flags; ``--resume`` loads the
  checkpoint and refuses settings that would break a bitwise resume;
* data: ``--data`` or the embedded digits, the task inferred from the target, the split;
* the run: one fit of the Trainer over the epochs left, whose callback writes each epoch's
  history line and checkpoint, with signals stopping it (and, under MPI, every
  rank in step);
* output: metrics.json, model.npz, training.png (rank 0).
"""
import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np

from .._validation import BadInput
from ..data.model import build_network
from ..data.preprocess import column_names, number_text
from ..model.network import residual_skips
from ..model.trainer import check_batches
from .common import CHECKPOINT, EXIT_OK, EXIT_SIGNAL, HISTORY, METRICS, MODEL, PLOT, \
    Stopped, UsageError, layers as _layers

# train's settings: flags, TOML keys (--config) and what a checkpoint records use these names
DEFAULTS = dict(data=None, target=None, layers=[64], activation="relu", loss=None,
                optimizer="adam", lr=1e-3, batch_size=32, epochs=500, seed=0, dtype="float32",
                validation_split=0.25, threads=None, out=None, checkpoint_every=1, plot=True,
                quiet=False, clip_norm=None, schedule=None, early_stopping="auto", min_delta=0.0,
                class_weight=None, sample_weight=None, skips=None, normalization=None,
                dropout=0.0, categorical=None, numeric=None, drop=None, delimiter=None,
                max_onehot=16, min_frequency=5, weight_decay="auto", init="glorot_uniform",
                header=None, encoding=None)
# the defaults for tables, chosen on ten real tables against scikit-learn (docs/real-tables.md):
# up to 500 epochs, stopped when the validation loss has not improved for this many
AUTO_PATIENCE = 30
# ... and an L2 weight decay of this / (training rows): strong on a table of a hundred rows,
# negligible on a hundred thousand
AUTO_DECAY = 4.0
# settings a resumed run may change; the others must match the checkpoint (bitwise resume)
RESUMABLE = {"epochs", "threads", "out", "checkpoint_every", "plot", "quiet"}
# ... of which these describe this process, not the run: never taken from the checkpoint
CURRENT = {"threads", "out"}
# what fastbp train records in a checkpoint besides the trainer's state (and, optionally,
# "early_stopping": {"best_epoch": ..., "stopped": ...})
CHECKPOINT_KEYS = ("settings", "trainer", "epoch", "history", "data_sha256")
# the --schedule forms, as the help and the error messages show them
SCHEDULE_FORMS = ("cosine, cosine:ETA_MIN, step:STEP_SIZE[:GAMMA], multistep:M1,M2,...[:GAMMA], "
                  "exponential:GAMMA, onecycle, onecycle:MAX_LR, plateau, "
                  "plateau:FACTOR[:PATIENCE]")
# schedules laid out over the run's epochs: a resume may not change --epochs
EPOCH_SCHEDULES = ("cosine", "onecycle")


def train(args, comm=None):
    """Run ``fastbp train`` with the parsed ``args``; ``comm``: an MPI communicator of several
    ranks, or None.  Returns the exit code; raises :class:`UsageError` (bad input),
    :class:`Stopped` (a signal) or ``TrainingDivergedError``."""
    s, given = settings(args)
    checkpoint = resume(s, given) if getattr(args, "resume", False) else None
    if checkpoint:
        s = checkpoint.settings
    if s["out"]:
        _check_out(s["out"])        # on every rank: all refuse together, none waits for the others
    _set_threads(s["threads"])
    if comm is not None and s["threads"] is None:     # each rank its share of the node's cores
        from ..distributed import share_cores
        share_cores(comm)
    data = load_data(s)
    if checkpoint and "preprocessor" not in checkpoint.info:
        raise UsageError("--resume: the checkpoint was written by a fastbp that read data "
                         "without a fitted preprocessing (before tables): start the run again")
    if checkpoint and checkpoint.info["data_sha256"] != data.fingerprint:
        raise UsageError("--resume: the data differ from the checkpointed run's (or so does "
                         "their fitted preprocessing)")
    check_network(s, data)
    run = Run(s, data, checkpoint, comm)
    if run.rank == 0 and not s["quiet"]:
        print("\n".join(data.prepared.summary(data.source)), file=sys.stderr, flush=True)
    if s["out"]:
        _prepare_out(s["out"])      # only now: a refused run writes nothing
    seconds = run.epochs()
    if run.rank == 0:
        write_output(s, data, run, seconds)
    return EXIT_OK


# -- settings and resume ------------------------------------------------------------------------
def _load_config(path):
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except OSError as e:
        raise UsageError(f"--config {path}: unreadable ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"--config {path}: not valid TOML ({e})") from None
    conf = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in DEFAULTS:
            raise UsageError(f"--config {path}: unknown setting {key!r}; known: "
                             f"{', '.join(sorted(DEFAULTS))}")
        conf[name] = value
    return conf


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def settings(args):
    """``(settings, names given)``: defaults, then the --config file, then the flags given on
    the command line; every value checked (a TOML file can hold anything)."""
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume")}
    conf = _load_config(args.config) if getattr(args, "config", None) else {}
    s = {**DEFAULTS, **conf, **given}
    try:
        s["layers"] = _layers(s["layers"])
    except argparse.ArgumentTypeError as e:
        raise UsageError(str(e)) from None
    for name in ("epochs", "batch_size", "checkpoint_every"):
        if not _is_int(s[name]) or s[name] < 1:
            raise UsageError(f"{name} must be a positive integer; got {s[name]!r}")
    if s["threads"] is not None and (not _is_int(s["threads"]) or s["threads"] < 1):
        raise UsageError(f"threads must be a positive integer; got {s['threads']!r}")
    if not _is_int(s["seed"]) or s["seed"] < 0:
        raise UsageError(f"seed must be an integer >= 0; got {s['seed']!r}")
    if not _is_number(s["validation_split"]) or not 0 <= s["validation_split"] < 1:
        raise UsageError(f"validation_split must lie in [0, 1); got {s['validation_split']!r}")
    if not _is_number(s["lr"]) or not 0 < s["lr"] < float("inf"):
        raise UsageError(f"lr must be a positive number; got {s['lr']!r}")
    if s["dtype"] not in ("float32", "float64"):
        raise UsageError(f"dtype must be float32 or float64; got {s['dtype']!r}")
    for name in ("data", "target", "out", "loss", "delimiter", "encoding"):
        if s[name] is not None and not isinstance(s[name], str):
            raise UsageError(f"{name} must be a string; got {s[name]!r}")
    for name in ("categorical", "numeric", "drop"):
        try:
            s[name] = column_names(s[name], name) or None
        except BadInput as e:
            raise UsageError(str(e)) from None
    s["header"] = _header(s["header"])
    for name, low in (("max_onehot", 0), ("min_frequency", 1)):
        if not _is_int(s[name]) or s[name] < low:
            raise UsageError(f"{name} must be an integer >= {low}; got {s[name]!r}")
    if not isinstance(s["optimizer"], str):
        raise UsageError(f"optimizer must be a string; got {s['optimizer']!r}")
    for name in ("plot", "quiet"):
        if not isinstance(s[name], bool):
            raise UsageError(f"{name} must be true or false; got {s[name]!r}")
    if not getattr(args, "resume", False):     # resumed: against the checkpoint's layers
        _check_structure(s)
    _check_controls(s)
    return s, set(given) | set(conf)


def _header(value):
    """The CSV header setting: None (detect), True or False, from auto/yes/no or a boolean."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("auto", "detect"):
        return None
    if text in ("yes", "true", "1"):
        return True
    if text in ("no", "false", "0"):
        return False
    raise UsageError(f"header must be yes, no or auto; got {value!r}")


# -- the network's structure: --activation, --skips, --normalization, --dropout -----------------
SKIP_FORMS = ("'residual', 'none', or I:J pairs such as 0:2,1:3 (TOML: \"residual\" or "
              "[[0, 2], [1, 3]]); activations are numbered like the layer sizes: 0 the input, "
              "k the output of hidden layer k")
ACTIVATIONS = "relu, leaky_relu, sigmoid (or logistic), tanh, identity"
NORMALIZATIONS = "batch, layer or none"


class _Bad(Exception):
    """What is wrong with one entry of a per-layer setting."""


def _activation(v):
    from ..kernels.activations import HIDDEN, NAMES
    if not isinstance(v, str) or v.strip().lower() not in HIDDEN:
        raise _Bad(f"unknown activation {v!r}; expected {ACTIVATIONS}")
    return NAMES[HIDDEN[v.strip().lower()]]


def _normalization(v):
    if v is None:
        return None
    if not isinstance(v, str) or v.strip().lower() not in ("batch", "layer", "none"):
        raise _Bad(f"unknown normalization {v!r}; expected {NORMALIZATIONS}")
    v = v.strip().lower()
    return None if v == "none" else v


def _dropout(v):
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise _Bad(f"dropout must be a number in [0, 1), not {v!r}") from None
    if not _is_number(v) or not 0 <= v < 1:
        raise _Bad(f"dropout must be a probability in [0, 1) (the fraction of units dropped), "
                   f"not {v!r}")
    return float(v)


def _per_layer(name, value, layers, one):
    """A per-hidden-layer setting in canonical form: one value for every hidden layer, or a list
    of one per hidden layer (from the flag's comma-separated text or a TOML list); a list whose
    entries are all equal is that single value (``relu,relu`` is ``relu``)."""
    hidden = len(layers)
    items = value
    if isinstance(value, str) and "," in value:
        items = value.split(",")
    try:
        if isinstance(items, (list, tuple)):
            if len(items) != hidden:
                raise UsageError(
                    f"{name} {_spec_text(value)} has {len(items)} entries, but the network has "
                    f"{hidden} hidden layer{'s' if hidden != 1 else ''} (layers "
                    f"{','.join(map(str, layers))}): give one {name} for all, or one per hidden "
                    f"layer")
            values = [one(v) for v in items]
        else:
            values = [one(items)]
    except _Bad as e:
        where = f" (in {name} {_spec_text(value)})" if isinstance(items, (list, tuple)) else ""
        raise UsageError(f"{e}{where}") from None
    return values[0] if all(v == values[0] for v in values) else values


def _parse_skips(value, n_layers):
    """The canonical skips: None, "residual", or a sorted list of ``[i, j]`` pairs with
    ``0 <= i < j < n_layers`` (``n_layers``: the dense layers; the output takes no skip).  The
    widths are checked with the data (:func:`check_network`): the input's is not known yet."""
    if value is None:
        return None

    def bad(why):
        return UsageError(f"skips {_spec_text(value)}: {why}; the forms are {SKIP_FORMS}")

    if isinstance(value, str):
        text = value.strip().lower()
        if text == "residual":
            return "residual"
        if text == "none":
            return None
        pairs = []
        for item in text.split(","):
            i, _, j = item.partition(":")
            try:
                pairs.append([int(i), int(j)])
            except ValueError:         # no colon, or not integers
                raise bad(f"{item.strip()!r} is not a pair I:J of integers") from None
    elif isinstance(value, list):
        pairs = []
        for pair in value:
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(_is_int(v) for v in pair)):
                raise bad(f"{pair!r} is not a pair [i, j] of integers")
            pairs.append([pair[0], pair[1]])
    else:
        raise bad("not a string or a list of pairs")
    for i, j in pairs:
        if not 0 <= i < j:
            raise bad(f"{i}:{j} does not go forward (0 <= I < J)")
        if j >= n_layers:
            raise bad(f"{i}:{j} ends at {j}, but the hidden layers' outputs are 1 to "
                      f"{n_layers - 1} (the output layer takes no skip)")
    pairs.sort()
    for a, b in zip(pairs, pairs[1:]):
        if a == b:
            raise bad(f"{a[0]}:{a[1]} is given twice")
    return pairs or None


def _check_structure(s):
    """Check the structure settings of ``s`` and put them in canonical form, so that
    ``--resume`` compares meanings, not spellings (``relu,relu`` is ``relu``; ``batch,none``
    is ``["batch", None]``; ``0.1`` is ``0.1,0.1``; skips are sorted pairs)."""
    layers = s["layers"]
    s["activation"] = _per_layer("activation", s["activation"], layers, _activation)
    s["normalization"] = _per_layer("normalization", s["normalization"], layers, _normalization)
    s["dropout"] = _per_layer("dropout", s["dropout"], layers, _dropout)
    s["skips"] = _parse_skips(s["skips"], len(layers) + 1)


def _spec_text(v):
    """A structure setting as the flags spell it: ``batch,none``, ``0:2,1:3``, ``0.1``."""
    if isinstance(v, list):
        return ",".join(":".join(map(str, x)) if isinstance(x, (list, tuple)) else _spec_text(x)
                        for x in v)
    if v is None:
        return "none"
    if _is_number(v):
        return number_text(v)
    return str(v)


def _skip_pairs(skips, sizes, embedded=False):
    """The (i, j) pairs of the canonical ``skips`` for a network of ``sizes`` (``embedded``: its
    input has embedded categories, so no residual skip starts there)."""
    if skips == "residual":
        return residual_skips(sizes, embedded)
    return sorted(tuple(p) for p in skips or ())


def _activation_name(k):
    return "the input" if k == 0 else f"hidden layer {k}'s output"


def check_network(s, data):
    """What the structure settings ask of this data's network, checked before anything is
    trained: skip widths (the input's is the data's, embedded categories looked up: no skip
    starts there then), and batch normalisation's batches of more than one row (the trainer
    refuses a batch of one)."""
    emb = data.preprocessor.embeddings
    n_in = data.n_in - len(emb) + sum(d for _, d in emb)
    sizes = [n_in, *s["layers"], data.n_out]
    skips = s["skips"]
    pairs = _skip_pairs(skips, sizes, bool(emb))
    if skips == "residual" and not pairs:
        raise UsageError(f"skips residual adds a_(j-1) to a_j where the widths match, and no two "
                         f"consecutive activations of the layer sizes {sizes} do (the input has "
                         f"{n_in} features{', with embedded categories: no skip from it' if emb else ''}"
                         f"); give equal widths (e.g. --layers {s['layers'][0]},{s['layers'][0]}) "
                         f"or explicit pairs I:J")
    if emb and any(i == 0 for i, _ in pairs):
        raise UsageError("skips: none can start at the input (0) of a network with embedded "
                         "categories (their vectors are looked up, not given)")
    for i, j in pairs:
        if sizes[i] != sizes[j]:
            raise UsageError(f"skips {i}:{j}: the widths differ: {_activation_name(i)} has "
                             f"{sizes[i]} units, {_activation_name(j)} {sizes[j]} (a skip adds "
                             f"a_{i} to a_{j}, so they must match; layer sizes {sizes})")
    norms = s["normalization"] if isinstance(s["normalization"], list) else [s["normalization"]]
    n = len(data.Xtr)
    check_batches("batch" in norms, n, min(s["batch_size"], n),
                  hint="change --batch-size (or --validation-split)")


# -- training controls: --clip-norm, --schedule, --early-stopping, --class-weight, ... ----------
def _check_controls(s):
    """Check the training controls of the settings ``s`` and put them in canonical form (so
    that ``--resume`` compares meanings, not spellings: ``step:5`` is ``step:5:0.1``)."""
    if s["clip_norm"] is not None and (not _is_number(s["clip_norm"])
                                       or not 0 < s["clip_norm"] < float("inf")):
        raise UsageError(f"clip_norm must be a positive number; got {s['clip_norm']!r}")
    es = s["early_stopping"]
    if isinstance(es, str) and es.strip().lower() in ("auto", "none", "off"):
        es = es.strip().lower()     # auto: on when there is a validation split
        es = AUTO_PATIENCE if es == "auto" and s["validation_split"] > 0 else None
    elif isinstance(es, str):
        try:
            es = int(es)
        except ValueError:
            es = s["early_stopping"]
    if es is not None and (not _is_int(es) or es < 1):
        raise UsageError(f"early_stopping (the patience in epochs) must be an integer >= 1, "
                         f"'auto' or 'none'; got {s['early_stopping']!r}")
    s["early_stopping"] = es
    wd = s["weight_decay"]
    if isinstance(wd, str) and wd.strip().lower() == "auto":
        wd = "auto"
    elif isinstance(wd, str):
        try:
            wd = float(wd)
        except ValueError:
            pass
    if wd != "auto" and (not _is_number(wd) or not 0 <= wd < float("inf")):
        raise UsageError(f"weight_decay must be a number >= 0 or 'auto'; got "
                         f"{s['weight_decay']!r}")
    s["weight_decay"] = wd if wd == "auto" else float(wd)
    from ..model.network import INITS
    if s["init"] not in INITS:
        raise UsageError(f"init must be one of {', '.join(INITS)}; got {s['init']!r}")
    if not _is_number(s["min_delta"]) or not 0 <= s["min_delta"] < float("inf"):
        raise UsageError(f"min_delta must be a number >= 0; got {s['min_delta']!r}")
    if s["early_stopping"] is not None and s["validation_split"] == 0:
        raise UsageError("early_stopping watches the validation loss, and validation_split is "
                         "0: give --validation-split a fraction > 0 (e.g. 0.2)")
    if s["schedule"] is not None:
        s["schedule"] = _schedule_text(*parse_schedule(s["schedule"]))
    s["class_weight"] = _parse_class_weight(s["class_weight"])
    if s["sample_weight"] is not None and (not isinstance(s["sample_weight"], str)
                                           or not s["sample_weight"].strip()):
        raise UsageError(f"sample_weight must name a column of the data or a .npy file; got "
                         f"{s['sample_weight']!r}")


def parse_schedule(spec):
    """``(kind, parameters)`` of a --schedule ``spec`` (see :data:`SCHEDULE_FORMS`); a bad
    spec is a UsageError that names it and the accepted forms."""
    if not isinstance(spec, str):
        raise UsageError(f"schedule must be a string, one of {SCHEDULE_FORMS}; got {spec!r}")
    kind, _, rest = spec.strip().lower().partition(":")
    args = rest.split(":") if rest else []

    def bad(why):
        return UsageError(f"schedule {spec!r}: {why}; the forms are {SCHEDULE_FORMS}")

    def number(text, name, low, low_open=False, high=None):
        try:
            v = float(text)
        except ValueError:
            raise bad(f"{name} must be a number, not {text!r}") from None
        if not (v > low if low_open else v >= low) or not v < (high or float("inf")):
            rel = ">" if low_open else ">="
            raise bad(f"{name} must be {rel} {low:g}" + (f" and < {high:g}" if high else "")
                      + f", not {text}")
        return v

    def whole(text, name, minimum):
        try:
            v = int(text)
        except ValueError:
            raise bad(f"{name} must be an integer, not {text!r}") from None
        if v < minimum:
            raise bad(f"{name} must be an integer >= {minimum}, not {text}")
        return v

    def most(n, names):
        if len(args) > n:
            raise bad(f"{kind} takes {'no parameters' if not n else 'at most ' + names}")

    if kind == "cosine":
        most(1, "ETA_MIN")
        return kind, {"eta_min": number(args[0], "ETA_MIN", 0) if args else 0.0}
    if kind == "step":
        if not args:
            raise bad("step needs STEP_SIZE (epochs between decays)")
        most(2, "STEP_SIZE:GAMMA")
        return kind, {"step_size": whole(args[0], "STEP_SIZE", 1),
                      "gamma": number(args[1], "GAMMA", 0, low_open=True) if len(args) > 1 else 0.1}
    if kind == "multistep":
        if not args or not args[0].strip():
            raise bad("multistep needs its milestones (epochs, comma-separated)")
        most(2, "MILESTONES:GAMMA")
        milestones = sorted(whole(m, "a milestone", 1) for m in args[0].split(","))
        return kind, {"milestones": milestones,
                      "gamma": number(args[1], "GAMMA", 0, low_open=True) if len(args) > 1 else 0.1}
    if kind == "exponential":
        if not args:
            raise bad("exponential needs GAMMA (the factor per epoch)")
        most(1, "GAMMA")
        return kind, {"gamma": number(args[0], "GAMMA", 0, low_open=True)}
    if kind == "onecycle":
        most(1, "MAX_LR")
        return kind, ({"max_lr": number(args[0], "MAX_LR", 0, low_open=True)} if args else {})
    if kind == "plateau":
        most(2, "FACTOR:PATIENCE")
        factor = number(args[0], "FACTOR", 0, low_open=True, high=1) if args else 0.1
        return kind, {"factor": factor,
                      "patience": whole(args[1], "PATIENCE", 0) if len(args) > 1 else 10}
    raise bad(f"unknown schedule {kind!r}")


def _schedule_text(kind, p):
    """The canonical spec of a parsed schedule (every parameter spelt out)."""
    if kind == "multistep":
        return f"multistep:{','.join(map(str, p['milestones']))}:{number_text(p['gamma'])}"
    order = {"cosine": ("eta_min",), "step": ("step_size", "gamma"), "exponential": ("gamma",),
             "onecycle": ("max_lr",), "plateau": ("factor", "patience")}[kind]
    return ":".join([kind] + [number_text(p[k]) for k in order if k in p])


def make_schedule(spec, lr, epochs, steps_per_epoch):
    """The fastbp.schedules object of the canonical ``spec`` for a run of ``epochs`` epochs of
    ``steps_per_epoch`` steps, at learning rate ``lr`` (None: no schedule)."""
    if spec is None:
        return None
    from .. import schedules
    kind, p = parse_schedule(spec)
    if kind == "cosine":
        return schedules.CosineAnnealingLR(T_max=epochs, eta_min=p["eta_min"])
    if kind == "step":
        return schedules.StepLR(p["step_size"], gamma=p["gamma"])
    if kind == "multistep":
        return schedules.MultiStepLR(p["milestones"], gamma=p["gamma"])
    if kind == "exponential":
        return schedules.ExponentialLR(p["gamma"])
    if kind == "onecycle":    # every step of the run, laid out over its epochs
        return schedules.OneCycleLR(max_lr=p.get("max_lr", lr),
                                    total_steps=epochs * steps_per_epoch)
    return schedules.ReduceLROnPlateau(factor=p["factor"], patience=p["patience"])


CLASS_WEIGHT_FORMS = "'balanced' or CLASS:WEIGHT pairs like 0:1,1:5"


def _parse_class_weight(value):
    """None, "balanced" or ``{class label (text): weight}`` from --class-weight (text) or a TOML
    table (``class_weight = {0 = 1, 1 = 5}``)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "balanced":
            return "balanced"
        pairs = []
        for item in text.split(","):
            label, sep, weight = item.rpartition(":")
            if not sep or not label.strip():
                raise UsageError(f"class_weight takes {CLASS_WEIGHT_FORMS}; got {value!r}")
            pairs.append((label.strip(), weight.strip()))
    elif isinstance(value, dict):
        pairs = [(str(k).strip(), v) for k, v in value.items()]
    else:
        raise UsageError(f"class_weight takes {CLASS_WEIGHT_FORMS}; got {value!r}")
    out = {}
    for label, weight in pairs:
        try:
            w = float(weight) if not isinstance(weight, bool) else None
        except (TypeError, ValueError):
            w = None
        if w is None or not 0 <= w < float("inf"):
            raise UsageError(f"class_weight: the weight of class {label!r} must be a number >= 0; "
                             f"got {weight!r}")
        if label in out:
            raise UsageError(f"class_weight: class {label!r} is given twice")
        out[label] = w
    if not out:
        raise UsageError(f"class_weight takes {CLASS_WEIGHT_FORMS}; got {value!r}")
    return out


def class_weights(cw, data):
    """The trainer's ``class_weight`` for the settings' ``cw``: "balanced", or ``{class index:
    weight}`` with the user's labels (as in the data, e.g. ``pos`` or ``1``) mapped to the
    trainer's class indices."""
    if cw is None:
        return None
    if data.classes is not None:
        labels = data.classes
    elif data.loss == "binary_cross_entropy":
        labels = [0, 1]
    else:
        raise UsageError(f"class_weight needs a classifier (loss cross_entropy or "
                         f"binary_cross_entropy); this run's loss is {data.loss}")
    if cw == "balanced":
        return cw
    out = {}
    for key, w in cw.items():
        idx = [i for i, c in enumerate(labels) if _same_label(key, c)]
        if not idx:
            raise UsageError(f"class_weight: no class {key!r} in the targets; the classes are "
                             f"{labels}")
        out[idx[0]] = w
    return out


def _same_label(text, label):
    """Whether the text of --class-weight names the class ``label`` (as the data spell it:
    ``pos``, ``1``, ``True``/``true`` for a boolean)."""
    if isinstance(label, bool):
        return text.strip().lower() in (("true", "1", "yes") if label else ("false", "0", "no"))
    if isinstance(label, str):
        return text == label
    try:
        return float(text) == float(label)
    except ValueError:
        return False


@dataclass
class Checkpoint:
    """A checkpoint to resume from: its arrays and info, and the run's settings (the saved
    ones, with those in RESUMABLE taken from this invocation)."""
    arrays: dict
    info: dict
    settings: dict

    @property
    def epoch(self):
        """Epochs completed."""
        return self.info["epoch"]

    @property
    def pending(self):
        """The trainer's unfinished epoch (``done``, ``n``, ``batch``), or None."""
        return self.info["trainer"].get("pending")


def resume(s, given):
    """The checkpoint in ``--out`` that ``--resume`` continues."""
    from ..model.modelfile import load_checkpoint
    out = s["out"]
    if not out:
        raise UsageError("--resume needs --out DIR (the directory of the interrupted run)")
    path = os.path.join(out, CHECKPOINT)
    if not os.path.exists(path):
        raise UsageError(f"--resume: no checkpoint at {path}")
    try:
        arrays, info = load_checkpoint(path)
    except OSError as e:
        raise UsageError(f"--resume: {path}: unreadable ({e.strerror or e})") from None
    except BadInput as e:                # what the file holds: a damaged or foreign checkpoint
        raise UsageError(f"--resume: {e}") from None
    if (not isinstance(info, dict) or any(k not in info for k in CHECKPOINT_KEYS)
            or not isinstance(info["settings"], dict) or not isinstance(info["trainer"], dict)):
        raise UsageError(f"--resume: {path} is not a checkpoint of fastbp train")
    saved = {**DEFAULTS, **info["settings"]}      # a checkpoint older than a setting: its default
    try:                                          # older spellings (e.g. "logistic")
        _check_structure(saved)
    except (BadInput, KeyError, TypeError):
        pass
    if "layers" not in given:     # per-layer settings count the checkpointed run's hidden layers
        try:
            s["layers"] = _layers(saved["layers"])
        except argparse.ArgumentTypeError:
            raise UsageError(f"--resume: {path} is not a checkpoint of fastbp train") from None
    _check_structure(s)
    config = info["trainer"].get("config") or {}
    sizes, embedded = config.get("layer_sizes"), bool(config.get("embeddings"))
    clash = sorted(k for k in given - RESUMABLE
                   if not _same_setting(k, s[k], saved.get(k), sizes, embedded))
    if clash:
        raise UsageError(f"--resume: {', '.join(clash)} differ from the checkpointed run; "
                         f"only {', '.join(sorted(RESUMABLE))} may change")
    kind = (saved["schedule"] or "").partition(":")[0]
    if kind in EPOCH_SCHEDULES and "epochs" in given and s["epochs"] != saved["epochs"]:
        raise UsageError(f"--resume: epochs cannot change with schedule {saved['schedule']} (it "
                         f"is laid out over the run's {saved['epochs']} epochs); resume with "
                         f"--epochs {saved['epochs']}")
    # what may change keeps the run's own value unless given again (a resumed --epochs 5000 run
    # goes on to 5000); where this process runs (threads, out) is always this invocation's
    here = {k: s[k] for k in RESUMABLE if k in given or k in CURRENT}
    return Checkpoint(arrays, info, {**saved, **here})


def _same_setting(name, new, saved, sizes, embedded):
    """Whether a setting given to ``--resume`` means the checkpoint's: equal canonical forms, or
    for skips the same pairs in the checkpointed network of ``sizes`` ("residual" spelt out;
    ``embedded``: its input has embedded categories)."""
    if new == saved:
        return True
    if name == "skips" and isinstance(sizes, list):
        try:
            return _skip_pairs(new, sizes, embedded) == _skip_pairs(saved, sizes, embedded)
        except (TypeError, ValueError, IndexError):
            return False
    return False


def _check_out(out):
    """Refuse an ``--out`` that cannot become a writable directory, creating nothing: an
    existing directory must be writable, else its nearest existing parent."""
    path = os.path.abspath(out)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        why = "not a directory" if not os.path.isdir(path) else "permission denied"
        raise UsageError(f"--out {out}: not a writable directory ({path}: {why})")


def _prepare_out(out):
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UsageError(f"--out {out}: not a writable directory ({e.strerror or e})") from None


def _set_threads(threads):
    if threads is None:
        return
    import numba
    if threads > numba.config.NUMBA_NUM_THREADS:
        raise UsageError(f"threads={threads} exceeds NUMBA_NUM_THREADS="
                         f"{numba.config.NUMBA_NUM_THREADS}")
    numba.set_num_threads(threads)


# -- data ---------------------------------------------------------------------------------------
class Data:
    """A run's data (:class:`fastbp.data.Prepared`) as the run uses it: the training matrix and
    targets (``Xtr``, ``ytr``, ``wtr``), the validation pair or None, the network's input and
    output widths, the loss, output activation and class labels (None for a regressor), the
    fitted preprocessor and the fingerprint a resume checks."""

    def __init__(self, prepared, source):
        self.prepared, self.source = prepared, source
        pre = self.preprocessor = prepared.preprocessor
        self.Xtr, self.ytr, self.val, self.wtr = (prepared.Xtr, prepared.ytr, prepared.val,
                                                  prepared.wtr)
        self.n_in, self.n_out = pre.n_features, pre.n_outputs
        self.loss, self.out_act, self.classes = (pre.target["loss"], pre.output_activation,
                                                 pre.classes)

    @property
    def fingerprint(self):
        """What a resume checks (computed when asked: only runs with --out need it)."""
        if not hasattr(self, "_fingerprint"):
            self._fingerprint = self.prepared.fingerprint
        return self._fingerprint


def load_data(s):
    """The run's data: ``--data`` (or the embedded digits) through the data layer: the target
    (``--target``: a column, default the last, or an .npz's y; for ``.npy`` data a ``y.npy``
    file), the columns' roles, rows without a target dropped, the split, the preprocessor
    fitted on the training rows."""
    from ..data import prepare
    from ..data.tables import arrays_table, load_npy, read_file
    dtype = np.dtype(s["dtype"])
    target, weight = s["target"], s["sample_weight"]
    source = s["data"]
    if not source:
        from ..datasets import load_digits
        source = "digits (embedded)"
        table = arrays_table(*load_digits(dtype), source)
    elif source.lower().endswith(".npy"):      # X alone; y from --target y.npy
        if target is None or not target.lower().endswith(".npy"):
            raise UsageError(f"{source}: a .npy holds X only; pass the targets with "
                             f"--target y.npy")
        if not os.path.exists(target):
            raise UsageError(f"--target {target}: no such file")
        table = arrays_table(read_file(source), _one_column(load_npy(target), target), source)
        target = "y"
    else:
        extra = [weight] if weight is not None and not weight.lower().endswith(".npy") else []
        table = read_file(source, s["delimiter"], s["header"], s["encoding"], extra=extra)
        if source.lower().endswith(".npz") and target is None and table.target is None:
            raise UsageError(f"{source}: needs arrays X and y; found no y")
    if weight is not None and weight not in table:
        if not weight.lower().endswith(".npy"):
            raise UsageError(f"--sample-weight {weight}: {source} has no such column (its "
                             f"columns: {_clip_names(table.names)}), and it is not a .npy file")
        if not os.path.exists(weight):
            raise UsageError(f"--sample-weight {weight}: no such file")
        weight = _one_column(load_npy(weight), weight)
    if target is not None and target not in table:
        raise UsageError(f"{source}: no column {target!r}; the columns are "
                         f"{_clip_names(table.names)}")
    if target is None:
        target = table.target or table.names[-1]
        if isinstance(weight, str) and weight == target:
            raise UsageError(f"{source}: the sample weights are column {weight!r}, the last "
                             f"one, which is the target unless --target names another (a "
                             f"column cannot be both the target and the sample weights)")
    if table.n_rows and len(table.columns) < 2:
        raise UsageError(f"{source}: one column: nothing is left for the features besides the "
                         f"target")
    prepared = prepare(table, target, categorical=s["categorical"], numeric=s["numeric"],
                       drop=s["drop"], loss=s["loss"], validation_split=s["validation_split"],
                       seed=s["seed"], dtype=dtype, sample_weight=weight,
                       max_onehot=s["max_onehot"], min_frequency=s["min_frequency"])
    return Data(prepared, source)


def _one_column(a, source):
    """A 1-D array from a ``.npy`` of one column."""
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise UsageError(f"{source}: one value per row needed; got shape {a.shape} (fastbp train "
                         f"takes one target column)")
    return a


def _clip_names(names, n=20):
    return names if len(names) <= n else names[:n] + [f"... ({len(names) - n} more)"]


# -- the run ------------------------------------------------------------------------------------
def _write_out(out, name, write, mode="wb"):
    """``write(f)`` on ``out/name``: atomically (``mode`` "wb") or appended (``mode`` "a");
    an OSError (a full disk, a directory made read-only) is a UsageError naming the file."""
    from ..model.modelfile import atomic_write
    path = os.path.join(out, name)
    try:
        if mode == "a":
            with open(path, "a") as f:
                write(f)
        else:
            atomic_write(path, write)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write {name} ({e.strerror or e})") from None


class _Progress:
    """A bar on a terminal, one plain line per epoch otherwise (batch logs)."""

    def __init__(self, total, quiet, show_lr=False):
        self.total, self.quiet, self.show_lr = total, quiet, show_lr
        self.tty = sys.stderr.isatty()
        self.open = False          # a bar is on the terminal's current line

    def note(self, text):
        """A line of its own (not over the bar)."""
        if not self.quiet:
            self.close()
            print(text, file=sys.stderr, flush=True)

    def close(self):
        """End the bar's line (before a message, or when training stops)."""
        if self.open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.open = False

    def epoch(self, e, rec, n):
        if self.quiet:
            return
        val = f"  val_loss {rec['val_loss']:.5g}" if rec["val_loss"] is not None else ""
        if rec.get("val_accuracy") is not None:
            val += f"  val_acc {rec['val_accuracy']:.4f}"
        elif rec.get("accuracy") is not None:
            val += f"  acc {rec['accuracy']:.4f}"
        if self.show_lr and rec.get("learning_rate") is not None:
            val += f"  lr {rec['learning_rate']:.3g}"
        speed = n / rec["seconds"] if rec["seconds"] > 0 else float("inf")
        text = f"epoch {e}/{self.total}  loss {rec['loss']:.5g}{val}  {speed:,.0f} samples/s"
        if self.tty:
            width = 24
            done = int(width * e / self.total)
            sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {text}\033[K")
            self.open = True
            if e == self.total:
                self.close()
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


class Run:
    """The network and trainer of a run (resumed from ``checkpoint`` when given), and its epoch
    loop: :meth:`epochs`.  Under MPI (``comm``) every rank runs it; rank 0 alone writes and
    prints."""

    def __init__(self, s, data, checkpoint, comm):
        from ..model.trainer import Trainer
        self.s, self.data, self.comm = s, data, comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.out = s["out"] if self.rank == 0 else None       # where this rank writes
        dtype = np.dtype(s["dtype"])
        self.net = build_network(data.preprocessor, s["layers"], activation=s["activation"],
                                 dtype=dtype, seed=s["seed"], skips=_network_skips(s["skips"]),
                                 normalization=s["normalization"], dropout=s["dropout"],
                                 init=s["init"])
        self.weight_decay = weight_decay(s["weight_decay"], len(data.Xtr))
        # the training controls, passed only when set (a trainer without them is the default)
        steps = -(-len(data.Xtr) // min(s["batch_size"], len(data.Xtr)))
        controls = {"schedule": make_schedule(s["schedule"], s["lr"], s["epochs"], steps),
                    "early_stopping": s["early_stopping"], "clip_norm": s["clip_norm"],
                    "class_weight": class_weights(s["class_weight"], data)}
        controls = {k: v for k, v in controls.items() if v is not None}
        if s["early_stopping"] is not None:
            controls["min_delta"] = s["min_delta"]
        # epochs: set by epochs() (those left); its callback writes history and checkpoints
        trainer = Trainer(self.net, loss=data.loss, optimizer=s["optimizer"],
                                 learning_rate=s["lr"], batch_size=s["batch_size"], epochs=1,
                                 seed=s["seed"], weight_decay=self.weight_decay, **controls)
        if comm is not None:
            from ..distributed import DistributedTrainer
            trainer = DistributedTrainer(trainer, comm, auto_threads=False)   # see train()
        self.trainer = trainer
        self.records, self.start, self.pending = [], 0, None
        # early stopping: the best epoch (1-based, as in history.jsonl) and whether it stopped
        self.best_epoch, self.stopped_early = None, False
        if checkpoint:
            try:
                trainer.load_state(checkpoint.arrays, checkpoint.info["trainer"])
            except BadInput as e:             # state that does not fit this run
                raise UsageError(f"--resume: {e}") from None
            self.records, self.start = list(checkpoint.info["history"]), checkpoint.epoch
            self.pending = checkpoint.pending
            es = checkpoint.info.get("early_stopping") or {}
            self.best_epoch, self.stopped_early = es.get("best_epoch"), bool(es.get("stopped"))
        self.compile_seconds = None       # of the first fit (later fits hit the cache)
        self._signals = []                # the signals received, in order
        self.progress = _Progress(s["epochs"], quiet=self.rank != 0 or s["quiet"],
                                  show_lr=s["schedule"] is not None)

    def start_line(self):
        s, d = self.s, self.data
        where = ""
        if self.pending is not None:
            p = self.pending
            where = (f", resuming epoch {self.start + 1} at step {p['done']}/"
                     f"{-(-p['n'] // p['batch'])}")
        elif self.start:
            where = f", resuming after epoch {self.start}"
        extras = "".join(f", {text}" for text in (
            s["schedule"] and f"schedule {s['schedule']}",
            s["clip_norm"] is not None and f"clip_norm {s['clip_norm']:g}",
            s["early_stopping"] is not None and f"early stopping (patience {s['early_stopping']})",
            self.weight_decay > 0 and f"weight_decay {self.weight_decay:.3g}" + (
                " (auto)" if s["weight_decay"] == "auto" else ""),
            s["class_weight"] is not None and "class weights",
            s["sample_weight"] is not None and "sample weights",
            isinstance(s["activation"], list) and f"activation {_spec_text(s['activation'])}",
            s["skips"] is not None and "skips " + (
                ",".join(f"{i}:{j}" for i, j in self.net.skips)
                + (" (residual)" if s["skips"] == "residual" else "")),
            s["normalization"] is not None
            and f"normalization {_spec_text(s['normalization'])}",
            s["dropout"] != 0 and f"dropout {_spec_text(s['dropout'])}") if text)
        return (f"fastbp: {len(d.Xtr)} training / {len(d.val[0]) if d.val else 0} validation "
                f"samples, network {self.net.layer_sizes}, {d.loss}, {s['optimizer']} "
                f"lr={s['lr']:g}, batch {s['batch_size']}{extras}{where}")

    def save(self, epoch):
        """The checkpoint after ``epoch`` completed epochs (and the trainer's unfinished one)."""
        if not self.out:
            return
        from ..model.modelfile import save_checkpoint
        arrays, tinfo = self.trainer.state()
        info = {"settings": self.s, "trainer": tinfo, "epoch": epoch, "history": self.records,
                "data_sha256": self.data.fingerprint,
                "preprocessor": self.data.preprocessor.to_json()}
        if self.s["early_stopping"] is not None:
            info["early_stopping"] = {"best_epoch": self.best_epoch, "stopped": self.stopped_early}
        path = os.path.join(self.out, CHECKPOINT)
        try:
            save_checkpoint(path, arrays, info)
        except OSError as e:
            raise UsageError(f"--out {self.out}: cannot write {CHECKPOINT} "
                             f"({e.strerror or e})") from None

    def stopping(self):
        """The signal to stop on, agreed by every rank (a rank must not leave the others
        waiting in an Allreduce), or None.  Every rank calls it at the same points."""
        mine = self._signals[0] if self._signals else 0
        if self.comm is None:
            return mine or None
        from mpi4py import MPI
        return self.comm.allreduce(mine, op=MPI.MAX) or None

    def _note_compile(self, h):
        if self.compile_seconds is None:
            self.compile_seconds = h.compile_seconds
            if h.compile_seconds > 1:
                self.progress.note(f"fastbp: kernels compiled in {h.compile_seconds:.1f} s "
                                   f"(cached for later runs)")

    def _epoch_done(self, h):
        """After each epoch of the fit (its callback; and after the fit for the epoch that
        stopped it early, which the trainer reports to no callback): the history line, the
        checkpoint when it is due, the progress.  Returns the signal to stop on, agreed by every
        rank (a True answer stops the fit), or None."""
        self._note_compile(h)
        self.done += 1
        epoch = self.start + self.done
        rec = _record(epoch, h)
        self.records.append(rec)
        if h.best_epoch is not None and h.best_epoch == len(h.val_loss) - 1:
            self.best_epoch = epoch             # this epoch improved on the best so far
        self.stopped_early = bool(h.stopped_early)
        if self.out:
            _write_out(self.out, HISTORY, lambda f: f.write(json.dumps(rec) + "\n"), mode="a")
        signum = None if self.stopped_early else self.stopping()
        if (epoch % self.s["checkpoint_every"] == 0 or epoch == self.s["epochs"] or signum
                or self.stopped_early):
            self.save(epoch)
        self.progress.epoch(epoch, rec, len(self.data.Xtr))
        self._signum = signum
        return signum is not None

    def epochs(self):
        """Train from the checkpoint's place to ``epochs`` in one fit of the trainer, whose
        callback writes each epoch's history line and checkpoint; returns the seconds it took.
        Raises :class:`Stopped` after writing the checkpoint when a signal arrives (mid-epoch:
        the trainer's ``stop``; between epochs: the callback's answer)."""
        from .. import engine
        s, d = self.s, self.data
        self.progress.note(self.start_line())
        if self.stopped_early:
            self.progress.note(f"fastbp: the run stopped early after epoch {self.start}: "
                               f"nothing left to train")
            return 0.0
        if engine.needs_compiling():
            self.progress.note("fastbp: compiling the kernels (first use only, cached "
                               "afterwards) ...")
        # the final metric's prediction (write_output), compiled aside with the kernels
        engine.expect_calls(self.net.dtype, "predict")
        main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, lambda signum, frame: self._signals.append(signum))
                    for sig in EXIT_SIGNAL} if main else {}
        t0 = time.perf_counter()
        self.done, self._signum = 0, None
        core = getattr(self.trainer, "trainer", self.trainer)       # (DistributedTrainer)
        try:
            if self.out:       # consistent with the checkpoint
                _write_out(self.out, HISTORY, lambda f: f.write(
                    "".join(json.dumps(r) + "\n" for r in self.records).encode()))
            if self.start < s["epochs"]:
                signum = self.stopping()
                if signum:
                    raise Stopped(signum)
                core.epochs = s["epochs"] - self.start
                core.callback = lambda epoch, h: self._epoch_done(h)
                weights = {} if d.wtr is None else {"sample_weight": d.wtr}
                h = self.trainer.fit(d.Xtr, d.ytr, validation_data=d.val,
                                     stop=lambda: bool(self._signals), **weights)
                self._note_compile(h)
                if h.interrupted:       # mid-epoch (all ranks): the checkpoint keeps its place
                    self.save(self.start + self.done)
                    raise Stopped(self.stopping() or signal.SIGTERM)
                if self._signum:        # between epochs: the callback saved and stopped
                    raise Stopped(self._signum)
                if h.stopped_early:     # that epoch went to no callback
                    self._epoch_done(h)
                    best = f"epoch {self.best_epoch}" if self.best_epoch else "none"
                    self.progress.note(
                        f"fastbp: early stopping after epoch {self.start + self.done}: val_loss "
                        f"has not improved by more than {s['min_delta']:g} for "
                        f"{s['early_stopping']} epochs; the model is the best epoch's ({best})")
            if (not self.stopped_early and s["early_stopping"] is not None
                    and core.restore_best_epoch()):
                # the epochs ran out first: the model is still the best epoch's (the checkpoint
                # keeps the last epoch's parameters, to go on from)
                self.progress.note(f"fastbp: the model is the best epoch's (epoch "
                                   f"{self.best_epoch})")
        finally:
            self.progress.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return time.perf_counter() - t0


def weight_decay(setting, n_train):
    """The trainer's weight decay for the setting: a number, or "auto": :data:`AUTO_DECAY` /
    the training rows."""
    return AUTO_DECAY / n_train if setting == "auto" else float(setting)


def _network_skips(skips):
    """fastbp.Network's ``skips`` for the canonical setting."""
    if skips is None or skips == "residual":
        return skips
    return [tuple(p) for p in skips]


def _record(epoch, h):
    """The history.jsonl line of ``epoch`` (1-based) from its fit's history ``h``: accuracy
    and val_accuracy only for the losses that have them (val_* None without validation)."""
    rec = {"epoch": epoch, "loss": h.loss[-1], "val_loss": h.val_loss[-1] if h.val_loss else None}
    if getattr(h, "accuracy", None):
        rec["accuracy"] = h.accuracy[-1]
        rec["val_accuracy"] = h.val_accuracy[-1] if getattr(h, "val_accuracy", None) else None
    rec["learning_rate"] = h.learning_rate[-1] if h.learning_rate else None
    rec.update(grad_norm=h.grad_norm[-1].tolist(), weight_norm=h.weight_norm[-1].tolist(),
               seconds=h.seconds[-1])
    return rec


# -- output -------------------------------------------------------------------------------------
def metrics_line(metrics):
    """The metrics of a run or an evaluation in one line (the names of metrics.json)."""
    unit = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")       # in [0, 1]
    keys = unit + ("log_loss", "r2", "rmse", "mae", "mse")
    return ", ".join(f"{k} {metrics[k]:.4f}" if k in unit else f"{k} {metrics[k]:.4g}"
                     for k in keys if metrics.get(k) is not None)


def write_output(s, data, run, seconds):
    """The final metrics on stdout; metrics.json, model.npz and training.png in --out."""
    from ..data.model import Model, evaluate_outputs
    net, records = run.net, run.records
    where = "validation" if data.val else "training"
    scores = evaluate_outputs(net, data.preprocessor, *(data.val or (data.Xtr, data.ytr)))
    last = records[-1] if records else {}
    metrics = {"loss": last.get("loss"), "val_loss": last.get("val_loss")}
    for key in ("accuracy", "val_accuracy"):    # the last epoch's, for a classifier's loss
        if key in last:
            metrics[key] = last[key]
    metrics.update({f"{where}_{k}": v for k, v in scores.items() if k not in ("n", "classes")})
    metrics.update({"epochs": s["epochs"], "epochs_trained": len(records),
                    "train_samples": len(data.Xtr), "seconds_this_run": seconds,
                    "compile_seconds": run.compile_seconds, "classes": data.classes,
                    "target": data.preprocessor.target["name"], "task": data.preprocessor.task,
                    "loss_function": data.loss, "layer_sizes": net.layer_sizes})
    if s["early_stopping"] is not None:
        best = run.best_epoch
        metrics.update(best_epoch=best, stopped_early=run.stopped_early,
                       best_val_loss=records[best - 1]["val_loss"] if best else None)
    metrics["settings"] = {k: v for k, v in s.items() if k not in ("quiet", "plot")}
    early = (f"; stopped early, the model is epoch {run.best_epoch}'s" if run.stopped_early
             and run.best_epoch else "")
    print(f"{where}: {metrics_line(scores)}  ({len(records) - run.start} epochs in "
          f"{seconds:.2f} s{early})")
    out = s["out"]
    if not out:
        return
    try:
        Model(net, data.preprocessor).save(os.path.join(out, MODEL))
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write {MODEL} ({e.strerror or e})") from None
    _write_out(out, METRICS, lambda f: f.write(json.dumps(metrics, indent=2).encode()))
    if s["plot"]:
        from .plot import plot_history
        try:
            plot_history(out, os.path.join(out, PLOT))
        except ImportError:
            pass
