"""Model files and checkpoints (fastbp.model.modelfile): round trips, a checksum over metadata and
numbers, ValueError (InputError) for every kind of damaged or foreign file, file modes that honour
the umask, and the recorded build.  Mostly on fake parameter arrays, without a Network."""
import ast
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from fastbp._validation import InputError
from fastbp.model import modelfile as mf

META = {"layer_sizes": [3, 4, 2], "activation": "tanh", "output_activation": "linear",
        "dtype": "float64"}


def _members(path):
    """{name: array} of an .npz, read with pickle allowed (the test's own files only)."""
    with np.load(path, allow_pickle=True) as z:
        return {k: z[k] for k in z.files}


def _rewrite(path, members, meta=None, reseal=False):
    """Write ``members`` (plus ``meta`` as JSON bytes, if given) as an .npz at ``path``;
    ``reseal`` recomputes the checksum, as a forger would, to reach the checks behind it."""
    members = dict(members)
    if meta is not None:
        if reseal:
            meta = dict(meta, sha256=mf._checksum(meta, {k: v for k, v in members.items()}))
        members["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with zipfile.ZipFile(path, "w") as zf:
        for k, a in members.items():
            with zf.open(k + ".npy", "w") as m:
                np.lib.format.write_array(m, np.asanyarray(a), allow_pickle=True)


def _saved_model(tmp_path, dtype=np.float64):
    path = tmp_path / "model.npz"
    params = np.linspace(-1, 1, 26).astype(dtype)
    mf.write_model(path, params, dict(META, dtype=np.dtype(dtype).name))
    return path, params


def _split(path):
    m = _members(path)
    return json.loads(m.pop("meta").tobytes()), m


# --- model files -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_round_trip_returns_caller_meta_plus_build(tmp_path, dtype):
    path, params = _saved_model(tmp_path, dtype)
    meta, got = mf.read_model(path)
    assert got.dtype == dtype and np.array_equal(got, params) and got.flags.writeable
    assert meta.pop("build") == mf.build_info()
    assert meta == dict(META, dtype=np.dtype(dtype).name)
    raw, _ = _split(path)
    assert raw["format"] == mf.FORMAT and raw["version"] == mf.VERSION and raw["n_params"] == 26


def test_write_model_refuses_bad_arguments(tmp_path):
    p = tmp_path / "m.npz"
    with pytest.raises(ValueError, match="reserved"):
        mf.write_model(p, np.zeros(3), dict(META, sha256="x"))
    with pytest.raises(TypeError, match="JSON"):
        mf.write_model(p, np.zeros(3), dict(META, extra=object()))
    with pytest.raises(TypeError, match="dict"):
        mf.write_model(p, np.zeros(3), [1, 2])
    with pytest.raises(ValueError, match="1-D"):
        mf.write_model(p, np.zeros((2, 2)), META)
    with pytest.raises(ValueError, match="float32 or float64"):
        mf.write_model(p, np.zeros(3, dtype=np.int64), META)
    assert not os.listdir(tmp_path)          # nothing written, no temporary left behind


@pytest.mark.parametrize("edit", [{"activation": "relu"}, {"layer_sizes": [3, 5, 2]},
                                  {"note": "added"}, {"build": {"numba": "0.0"}}])
def test_edited_metadata_with_the_old_checksum_is_refused(tmp_path, edit):
    path, _ = _saved_model(tmp_path)
    meta, members = _split(path)
    _rewrite(path, members, dict(meta, **edit))
    with pytest.raises(InputError, match="checksum"):
        mf.read_model(path)


def test_edited_parameters_are_refused(tmp_path):
    path, params = _saved_model(tmp_path)
    meta, _ = _split(path)
    changed = params.copy()
    changed[5] = np.nextafter(changed[5], 2)
    _rewrite(path, {"params": changed}, meta)
    with pytest.raises(InputError, match="checksum"):
        mf.read_model(path)
    _rewrite(path, {"params": params.astype(np.float32)}, meta)   # same values, other dtype
    with pytest.raises(InputError, match="checksum"):
        mf.read_model(path)


def test_missing_and_extra_members_are_named(tmp_path):
    path, params = _saved_model(tmp_path)
    meta, members = _split(path)
    _rewrite(path, {}, meta)
    with pytest.raises(InputError, match="missing member.*'params'"):
        mf.read_model(path)
    _rewrite(path, {"params": params, "bias": np.zeros(2)}, meta)
    with pytest.raises(InputError, match="unexpected member.*'bias'"):
        mf.read_model(path)
    _rewrite(path, members)
    with pytest.raises(InputError, match="no 'meta' member"):
        mf.read_model(path)


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"[" * 100000])
def test_metadata_that_is_not_a_json_object_is_refused(tmp_path, raw):
    path, params = _saved_model(tmp_path)
    _rewrite(path, {"params": params, "meta": np.frombuffer(raw, dtype=np.uint8)})
    with pytest.raises(InputError, match="metadata"):
        mf.read_model(path)


def test_metadata_stored_as_other_than_bytes_is_refused(tmp_path):
    path, params = _saved_model(tmp_path)
    _rewrite(path, {"params": params, "meta": np.zeros(3)})
    with pytest.raises(InputError, match="JSON bytes"):
        mf.read_model(path)


@pytest.mark.parametrize("edit, match", [
    ({"format": "fastbp.checkpoint"}, "not a fastbp model file"),
    ({"format": None}, "not a fastbp model file"),
    ({"version": 1}, "version 1"),
    ({"version": "2"}, "version '2'"),
    ({"version": True}, "version True"),
    ({"n_params": "26"}, "n_params"),
    ({"n_params": 25}, "n_params"),
    ({"n_params": True}, "n_params"),
    ({"build": ["x"]}, "build"),
    ({"sha256": 12}, "checksum"),
])
def test_wrong_values_of_the_file_keys_are_value_errors(tmp_path, edit, match):
    path, params = _saved_model(tmp_path)
    meta, members = _split(path)
    _rewrite(path, members, dict(meta, **edit), reseal="sha256" not in edit)
    with pytest.raises(InputError, match=match):
        mf.read_model(path)


def test_parameters_of_the_wrong_shape_or_dtype_are_refused(tmp_path):
    path, params = _saved_model(tmp_path)
    meta, _ = _split(path)
    for bad in (params.reshape(2, 13), params.astype(np.int64), params.astype(np.complex128)):
        _rewrite(path, {"params": bad}, meta, reseal=True)
        with pytest.raises(InputError, match="do not match"):
            mf.read_model(path)


def test_pickled_members_are_refused_unread(tmp_path):
    path, params = _saved_model(tmp_path)
    meta, _ = _split(path)
    evil = np.array([{"a": 1}, None], dtype=object)
    _rewrite(path, {"params": evil}, meta)
    with pytest.raises(InputError, match="pickled"):
        mf.read_model(path)
    with open(path, "wb") as f:                          # a pickle, not an archive
        pickle.dump({"params": params}, f)
    with pytest.raises(InputError, match="pickled"):
        mf.read_model(path)


@pytest.mark.parametrize("content", [b"", b"hello", b"PK\x03\x04garbage"])
def test_foreign_files_are_refused(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(InputError, match="not a fastbp model file"):
        mf.read_model(path)


def test_a_bare_npy_array_is_refused(tmp_path):
    path = tmp_path / "x.npz"
    np.save(path.open("wb"), np.zeros(3))
    with pytest.raises(InputError, match="bare .npy"):
        mf.read_model(path)


def test_truncated_files_are_refused(tmp_path):
    path, _ = _saved_model(tmp_path)
    data = path.read_bytes()
    for n in sorted({0, 1, 30, 100, len(data) // 2, len(data) - 100, len(data) - 1}):
        path.write_bytes(data[:n])
        with pytest.raises(InputError):
            mf.read_model(path)


def test_any_flipped_byte_is_refused_or_harmless(tmp_path):
    # bytes of the zip headers that carry no content (timestamps, ...) may change unnoticed;
    # everything else must end in InputError, never another exception or altered numbers
    path, params = _saved_model(tmp_path)
    data = bytearray(path.read_bytes())
    meta0 = mf.read_model(path)[0]
    for i in range(0, len(data), 3):
        flipped = data.copy()
        flipped[i] ^= 0x5A
        path.write_bytes(bytes(flipped))
        try:
            meta, got = mf.read_model(path)
        except InputError:
            continue
        assert meta == meta0 and np.array_equal(got, params), f"byte {i}"


def test_unopenable_files_raise_the_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        mf.read_model(tmp_path / "absent.npz")
    with pytest.raises(IsADirectoryError):
        mf.read_model(tmp_path)


def test_modelfile_does_not_import_the_network():
    tree = ast.parse(open(mf.__file__).read())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [f"{n.module}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m and "network" in m]


# --- checkpoints -----------------------------------------------------------------------------
def _checkpoint(tmp_path, info=None):
    path = tmp_path / "checkpoint.npz"
    arrays = {"params": np.arange(5.0), "state1": np.ones((2, 3), np.float32),
              "step": np.array(7), "file": np.zeros(0), "allow_pickle": np.array([True])}
    info = {"epoch": 3, "rng": {"state": 2**100}, "tuple": (1, 2)} if info is None else info
    mf.save_checkpoint(path, arrays, info)
    return path, arrays


def test_checkpoint_round_trip(tmp_path):
    path, arrays = _checkpoint(tmp_path)
    got, info = mf.load_checkpoint(path)
    assert sorted(got) == sorted(arrays)
    for k, a in arrays.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape and np.array_equal(got[k], a)
    assert info == {"epoch": 3, "rng": {"state": 2**100}, "tuple": [1, 2],
                    "build": mf.build_info()}


def test_checkpoint_keeps_the_callers_own_build_and_non_dict_info(tmp_path):
    path, _ = _checkpoint(tmp_path, {"build": "mine"})
    assert mf.load_checkpoint(path)[1] == {"build": "mine"}
    path, _ = _checkpoint(tmp_path, [1, "two"])
    assert mf.load_checkpoint(path)[1] == [1, "two"]
    assert _split(path)[0]["build"] == mf.build_info()


def test_checkpoint_refuses_bad_names_and_non_json_info(tmp_path):
    with pytest.raises(ValueError, match="'meta'"):
        mf.save_checkpoint(tmp_path / "c.npz", {"meta": np.zeros(1)}, {})
    with pytest.raises(TypeError, match="JSON"):
        mf.save_checkpoint(tmp_path / "c.npz", {"a": np.zeros(1)}, {"x": np.zeros(1)})
    with pytest.raises(ValueError):
        mf.save_checkpoint(tmp_path / "c.npz", {"a": np.array([None], dtype=object)}, {})
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("edit", [{"info": {"epoch": 4, "rng": {"state": 2**100},
                                            "tuple": [1, 2]}},
                                  {"build": {}}, {"note": 1}])
def test_edited_checkpoint_metadata_is_refused(tmp_path, edit):
    path, _ = _checkpoint(tmp_path)
    meta, members = _split(path)
    _rewrite(path, members, dict(meta, **edit))
    with pytest.raises(InputError, match="checksum"):
        mf.load_checkpoint(path)


def test_edited_or_renamed_checkpoint_arrays_are_refused(tmp_path):
    path, arrays = _checkpoint(tmp_path)
    meta, members = _split(path)
    _rewrite(path, dict(members, step=np.array(8)), meta)
    with pytest.raises(InputError, match="checksum"):
        mf.load_checkpoint(path)
    swapped = dict(members, params=members["state1"], state1=members["params"])
    _rewrite(path, swapped, meta)
    with pytest.raises(InputError, match="checksum"):
        mf.load_checkpoint(path)


def test_checkpoint_missing_and_extra_members_are_named(tmp_path):
    path, _ = _checkpoint(tmp_path)
    meta, members = _split(path)
    del members["state1"]
    _rewrite(path, dict(members, junk=np.zeros(1)), meta)
    with pytest.raises(InputError, match="missing member.*'state1'.*unexpected member.*'junk'"):
        mf.load_checkpoint(path)


@pytest.mark.parametrize("edit", [{"arrays": "params"}, {"arrays": ["params", "params"]},
                                  {"arrays": [1]}, {"info": None, "drop_info": True},
                                  {"format": mf.FORMAT}, {"version": 1}])
def test_checkpoint_metadata_of_the_wrong_shape_is_a_value_error(tmp_path, edit):
    path, _ = _checkpoint(tmp_path)
    meta, members = _split(path)
    if edit.pop("drop_info", False):
        del meta["info"], edit["info"]
    _rewrite(path, members, dict(meta, **edit), reseal=True)
    with pytest.raises(InputError):
        mf.load_checkpoint(path)


def test_checkpoint_pickled_and_truncated(tmp_path):
    path, _ = _checkpoint(tmp_path)
    meta, members = _split(path)
    _rewrite(path, dict(members, step=np.array([object()], dtype=object)), meta)
    with pytest.raises(InputError, match="pickled"):
        mf.load_checkpoint(path)
    mf.save_checkpoint(path, members, {})
    data = path.read_bytes()
    for n in (0, 50, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:n])
        with pytest.raises(InputError, match="fastbp checkpoint"):
            mf.load_checkpoint(path)


def test_a_model_file_is_not_a_checkpoint(tmp_path):
    path, _ = _saved_model(tmp_path)
    with pytest.raises(InputError, match="not a fastbp checkpoint"):
        mf.load_checkpoint(path)


# --- file modes ------------------------------------------------------------------------------
@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_honours_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert mf._umask() == mask
    mf.write_model(tmp_path / "model.npz", np.zeros(3), META)
    mf.save_checkpoint(tmp_path / "checkpoint.npz", {"a": np.zeros(1)}, {})
    mf.atomic_write(tmp_path / "history.jsonl", lambda f: f.write(b"{}\n"))
    for name in ("model.npz", "checkpoint.npz", "history.jsonl"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == mode, name


def test_an_existing_files_mode_is_replaced_by_the_umask_one(tmp_path, umask):
    path = tmp_path / "metrics.json"
    path.write_text("{}")
    os.chmod(path, 0o600)
    mf.atomic_write(path, lambda f: f.write(b"[]"))
    assert os.stat(path).st_mode & 0o777 == 0o644 and path.read_text() == "[]"


def test_umask_without_proc(monkeypatch, umask):
    umask(0o027)

    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/self/status")
    monkeypatch.setattr(mf, "open", no_proc, raising=False)
    assert mf._umask() == 0o027
    monkeypatch.undo()
    assert mf._umask() == 0o027 == os.umask(0o027)   # and it was left as it was


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        mf.atomic_write(path, fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.npz"]


# --- build info ------------------------------------------------------------------------------
def test_build_info_records_versions_and_cpu():
    import llvmlite
    import numba

    import fastbp
    b = mf.build_info()
    assert set(b) == {"fastbp", "numba", "llvmlite", "numpy", "python", "machine", "cpu_name",
                      "cpu_features"}
    assert all(isinstance(v, str) for v in b.values()) and json.loads(json.dumps(b)) == b
    assert (b["fastbp"], b["numba"], b["llvmlite"], b["numpy"]) == (
        fastbp.__version__, numba.__version__, llvmlite.__version__, np.__version__)
    assert b["cpu_name"] and "," in b["cpu_features"] or numba.config.CPU_FEATURES is not None
    b["numba"] = "edited"
    assert mf.build_info()["numba"] == numba.__version__     # each call returns a fresh copy


def test_build_differences():
    here = mf.build_info()
    assert mf.build_differences(here) == [] == mf.build_differences(dict(here), here)
    other = dict(here, numba="0.0.1", cpu_name="generic")
    assert mf.build_differences(other) == [f"numba 0.0.1 -> {here['numba']}",
                                           f"cpu_name generic -> {here['cpu_name']}"]
    a = {"cpu_features": "+sse2,+avx512f,-amx-tile,+avx2"}
    b = {"cpu_features": "+sse2,-avx512f,+amx-tile,+avx2"}
    assert mf.build_differences(a, b) == [
        "CPU features differ (only saved: avx512f; only here: amx-tile)"]
    assert mf.build_differences({"cpu_features": "+a,-b"}, {"cpu_features": "+a"}) == [
        "CPU features differ"]
    many = {"cpu_features": ",".join(f"+f{i}" for i in range(9))}
    assert mf.build_differences(many, {"cpu_features": ""}) == [
        "CPU features differ (only saved: f0, f1, f2, f3, f4, f5 and 3 more)"]
    assert mf.build_differences({"numba": "1"}, {"numba": "1", "gpu": "x"}) == [
        "gpu unknown -> x"]
    assert mf.build_differences(None) and mf.build_differences(["x"])


# --- through the Network ---------------------------------------------------------------------
def _network():
    import fastbp
    return fastbp.Network, fastbp.load


def test_network_save_and_load(tmp_path):
    Network, load = _network()
    net = Network([3, 5, 2], activation="tanh", dtype="float32", seed=1)
    net.save(tmp_path / "net.npz")
    back = load(tmp_path / "net.npz")
    assert back.layer_sizes == net.layer_sizes and back.activation == "tanh"
    assert back.params.dtype == np.float32 and np.array_equal(back.params, net.params)


def test_network_file_with_edited_activation_is_refused(tmp_path):
    Network, load = _network()
    path = tmp_path / "net.npz"
    Network([3, 5, 2], activation="tanh", seed=1).save(path)
    meta, members = _split(path)
    assert meta["activation"] == "tanh"
    _rewrite(path, members, dict(meta, activation="relu"))
    with pytest.raises(ValueError, match="checksum"):
        load(path)


def test_network_file_whose_resealed_meta_is_no_network_is_refused(tmp_path):
    Network, load = _network()
    path = tmp_path / "net.npz"
    Network([3, 5, 2], seed=1).save(path)
    meta, members = _split(path)
    _rewrite(path, members, dict(meta, layer_sizes="three"), reseal=True)
    with pytest.raises(ValueError, match="do not describe a network"):
        load(path)
