"""Model files and checkpoints: one checksum over parameters and metadata, missing or extra
members refused with ValueError, the user's umask honoured, the build recorded."""
import json
import os
import stat

import numpy as np
import pytest

import fastbp
from fastbp.model import modelfile


def _saved(tmp_path, activation="tanh"):
    net = fastbp.Network([3, 4, 2], activation=activation, dtype=np.float64, seed=0)
    path = tmp_path / "model.npz"
    net.save(path)
    return net, path


def _members(path):
    with np.load(path) as z:
        return {k: z[k].copy() for k in z.files}


def _meta(members):
    return json.loads(members["meta"].tobytes().decode())


def _rewrite(path, members, meta=None):
    if meta is not None:
        members = {**members, "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    np.savez(path, **members)


def test_altered_metadata_is_refused(tmp_path):
    net, path = _saved(tmp_path)
    assert fastbp.load(path).activation == "tanh"
    members = _members(path)
    meta = _meta(members)
    meta["activation"] = "relu"                   # the checksum of the parameters still holds
    _rewrite(path, members, meta)
    with pytest.raises(ValueError, match="checksum mismatch"):
        fastbp.load(path)


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_missing_or_extra_members_are_value_errors(tmp_path, change):
    _, path = _saved(tmp_path)
    members = _members(path)
    if change == "missing":
        del members["params"]
    else:
        members["more"] = np.zeros(3)
    _rewrite(path, members)
    with pytest.raises(ValueError, match="members"):
        fastbp.load(path)
    del members["meta"]
    _rewrite(path, members)
    with pytest.raises(ValueError, match="meta"):
        fastbp.load(path)


def test_metadata_of_the_wrong_kind_are_value_errors(tmp_path):
    _, path = _saved(tmp_path)
    members = _members(path)
    for bad in (b"not json", b"[1, 2]"):
        _rewrite(path, {**members, "meta": np.frombuffer(bad, np.uint8)})
        with pytest.raises(ValueError, match="metadata"):
            fastbp.load(path)
    meta = _meta(members)
    meta["layer_sizes"] = "three"
    meta["sha256"] = modelfile._digest(meta, {"params": members["params"]})  # consistent, still wrong
    _rewrite(path, members, meta)
    with pytest.raises(ValueError, match="do not describe a network"):
        fastbp.load(path)


def test_checkpoint_info_is_covered_by_the_checksum(tmp_path):
    path = tmp_path / "checkpoint.npz"
    modelfile.save_checkpoint(path, {"a": np.arange(3.0)}, {"epoch": 2})
    arrays, info = modelfile.load_checkpoint(path)
    assert info["epoch"] == 2 and info["build"] == modelfile.build_info()
    members = _members(path)
    meta = _meta(members)
    meta["info"]["epoch"] = 7
    _rewrite(path, members, meta)
    with pytest.raises(ValueError, match="checksum"):
        modelfile.load_checkpoint(path)
    members["b"] = np.ones(1)                      # an extra array
    _rewrite(path, members)
    with pytest.raises(ValueError, match="checksum"):
        modelfile.load_checkpoint(path)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_honour_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        _, path = _saved(tmp_path)
        modelfile.save_checkpoint(tmp_path / "checkpoint.npz", {"a": np.zeros(2)}, {})
        modelfile.atomic_write(tmp_path / "history.jsonl", lambda f: f.write(b"{}\n"))
    finally:
        os.umask(old)
    for name in ("model.npz", "checkpoint.npz", "history.jsonl"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name


def test_build_is_recorded_and_compared(tmp_path):
    _, path = _saved(tmp_path)
    meta, _ = modelfile.read_model(path)
    now = modelfile.build_info()
    assert meta["build"] == now and now["numba"] and now["cpu_features"]
    assert modelfile.build_differences(now) == []
    other = {**now, "numba": "0.1", "cpu_features": "+sse2"}
    assert modelfile.build_differences(other) == [f"numba 0.1 -> {now['numba']}", "CPU features differ"]
    assert modelfile.build_differences(None) == ["no build recorded"]
