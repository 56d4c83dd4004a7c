"""``fastbp export``: a saved model written as an ONNX file (needs the onnx package)."""
import os

from .common import EXIT_OK, UsageError


def export(args):
    """Write ``args.model`` (model.npz or its run directory) to ``args.onnx``."""
    from .predict import _load_model
    net = _load_model(args.model)     # a Model (or a bare Network): both have to_onnx
    out = os.fspath(args.onnx)
    if os.path.isdir(out):
        raise UsageError(f"--onnx {out} is a directory; name the .onnx file to write")
    try:        # a clear message before anything is written
        import onnx  # noqa: F401
    except ImportError:
        raise UsageError('export needs the onnx package: pip install "fastbp[onnx]" (onnx, '
                         'and onnxruntime to run the file)') from None
    try:
        net.to_onnx(out)
    except ImportError as e:
        raise UsageError(f"export: {e}") from None
    except OSError as e:
        raise UsageError(f"--onnx {out}: cannot write ({e.strerror or e})") from None
    print(out)
    return EXIT_OK
