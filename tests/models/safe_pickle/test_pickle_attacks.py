"""Issue 24 (2): crafted pickles and safetensors headers give one line, never a crash, never memory.

Every file is built here from raw pickle opcodes (no torch, no paddle). The crash-prone ones and the
size bombs run in one child interpreter under ``RLIMIT_AS`` (1.5 GiB): each must end in our own
error, not a signal, a ``MemoryError`` or a ``RecursionError``. Attempts to run code aim at a marker
file that must never appear.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pickle_opcodes import (
    BUILD,
    FALSE,
    NONE,
    ODICT,
    _plain,
    b,
    call,
    d,
    floats,
    g,
    i,
    marker_command,
    np_array,
    np_dtype,
    one_tensor,
    pk,
    refused,
    s,
    storage,
    t,
    tensor,
    write_zip,
    zip_state,
)

from mgtoolkit.errors import ModelUnavailableError
from mgtoolkit.io.safetensors_io import SafetensorsError
from mgtoolkit.models.safe_pickle import (
    PickleLimitError,
    UnsafePickleError,
    read_pdparams,
    read_pickled_weights,
    read_torch_bin,
)

# --- BUILD on each allowed type -----------------------------------------------------------------

BUILDS = {
    "ordered_dict_array_interface": d(w=ODICT + d(__array_interface__=d(data=t(i(4096), FALSE))) + BUILD),
    "ordered_dict_slot_state": d(w=ODICT + t(NONE, d(update=i(1))) + BUILD),
    "dict": d(w=b"}" + d(a=i(1)) + BUILD),
    "list": d(w=b"]" + d(a=i(1)) + BUILD),
    "storage_record": d(w=storage("0", 4) + d(array=i(1)) + BUILD),
    "storage_record_slots": d(w=storage("0", 4) + t(NONE, d(array=i(1))) + BUILD),
    "storage_type": d(w=g("torch", "FloatStorage") + t(NONE, d(name=s("LongStorage"))) + BUILD),
    "rebuilder_defaults": d(w=g("torch._utils", "_rebuild_tensor_v2") + t(NONE, d(fn=NONE)) + BUILD),
    "ndarray_class": d(w=g("numpy", "ndarray") + t(NONE, d(name=s("x"))) + BUILD),
    "rebuilt_tensor": d(w=tensor(storage("0", 4), 0, (4,), (1,)) + d(shape=i(1)) + BUILD),
    "tensor_class": d(w=g("torch", "Tensor") + t(NONE, d(x=i(1))) + BUILD),
    "int": d(w=i(7) + d(real=i(1)) + BUILD),
}


@pytest.mark.parametrize("case", sorted(BUILDS))
def test_build_on_each_allowed_type_is_refused(tmp_path, case):
    path = zip_state(tmp_path / "w.bin", BUILDS[case])
    message = refused(path, UnsafePickleError, "(BUILD)")
    assert "no code from the file ran" in message


def test_build_attempts_leave_the_loader_unchanged(tmp_path):
    """After every BUILD attempt, a clean file still reads exactly (nothing in the reader was edited)."""
    for case, body in BUILDS.items():
        with pytest.raises(UnsafePickleError):
            read_torch_bin(zip_state(tmp_path / f"{case}.bin", body))
    clean = zip_state(tmp_path / "clean.bin", one_tensor(1, (3,), (1,)))
    got = read_torch_bin(clean)
    np.testing.assert_array_equal(got["w"], np.array([1, 2, 3], dtype=np.float32))
    assert np.dtype("f4").flags == 0 and np.dtype("f4").itemsize == 4


def test_torch_module_metadata_is_accepted_and_dropped(tmp_path):
    """``torch.save(model.state_dict())`` BUILDs its OrderedDict with ``{'_metadata': ...}``: kept out."""
    meta = d(_metadata=ODICT)
    body = ODICT + b"(" + s("w") + tensor(storage("0", 4), 0, (2, 2), (2, 1)) + b"u" + meta + BUILD
    got = read_torch_bin(zip_state(tmp_path / "w.bin", body))
    assert list(got) == ["w"] and type(got["w"]) is np.ndarray
    np.testing.assert_array_equal(got["w"], np.arange(4, dtype=np.float32).reshape(2, 2))


# --- numpy dtypes: plain numbers only, no state -------------------------------------------------

DTYPE_ATTACKS = {
    "flags_edited": np_dtype("f4", (3, "<", None, None, None, -1, -1, 0x3F)),
    "elsize_edited": np_dtype("f4", (3, "<", None, None, None, 1 << 30, -1, 0)),
    "alignment_edited": np_dtype("f4", (3, "<", None, None, None, -1, 4096, 0)),
    "fields_added": np_dtype("f4", (3, "<", None, ("a",), d(a=i(0)), -1, -1, 0)),
    "state_twice": np_dtype("f4") + _plain((3, "<", None, None, None, -1, -1, 0)) + BUILD,
    "object": np_dtype("O8", (3, "|", None, None, None, -1, -1, 63)),
    "void": np_dtype("V8", (3, "|", None, None, None, 8, 1, 0)),
    "unicode": np_dtype("U4"),
}


@pytest.mark.parametrize("case", sorted(DTYPE_ATTACKS))
def test_dtype_state_and_object_dtypes_are_refused(tmp_path, case):
    path = tmp_path / "model_state.pdparams"
    path.write_bytes(pk(d(w=DTYPE_ATTACKS[case])))
    message = refused(path, UnsafePickleError, "numpy")
    assert "paddle.load" in message  # the paddle conversion hint


def test_object_array_data_is_refused(tmp_path):
    """An ndarray BUILD whose data is a list (numpy's object-array form) is refused."""
    spec = call(g("numpy.core.multiarray", "_reconstruct"), g("numpy", "ndarray"), t(i(0)), b(b"b"))
    body = spec + t(i(1), t(i(1)), np_dtype("f4"), FALSE, b"]" + g("os", "system")) + BUILD
    path = tmp_path / "model_state.pdparams"
    path.write_bytes(pk(d(w=body)))
    refused(path, UnsafePickleError, "os.system")
    body = spec + t(i(1), t(i(1)), np_dtype("f4"), FALSE, b"](" + i(1) + b"e") + BUILD
    path.write_bytes(pk(d(w=body)))
    refused(path, UnsafePickleError, "array data that is a list")


def test_array_without_data_or_with_wrong_size(tmp_path):
    path = tmp_path / "model_state.pdparams"
    spec = call(g("numpy.core.multiarray", "_reconstruct"), g("numpy", "ndarray"), t(i(0)), b(b"b"))
    path.write_bytes(pk(d(w=spec)))  # _reconstruct without BUILD: numpy's np.empty
    refused(path, UnsafePickleError, "without its data")
    path.write_bytes(pk(d(w=np_array(np.zeros(4, np.float32), raw=b"\0" * 8))))
    refused(path, ModelUnavailableError, "array data of 8 bytes")


def test_clean_array_pickles_come_back_plain(tmp_path):
    """Big-endian and Fortran-ordered arrays come back native and C-contiguous, values exact."""
    path = tmp_path / "model_state.pdparams"
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    spec = call(g("numpy.core.multiarray", "_reconstruct"), g("numpy", "ndarray"), t(i(0)), b(b"b"))
    fortran = np.asfortranarray(np.arange(6, dtype="<f8").reshape(2, 3))
    body = d(
        big=np_array(big, dtype=np_dtype("i4", (3, ">", None, None, None, -1, -1, 0))),
        fortran=spec + t(i(1), t(i(2), i(3)), np_dtype("f8"), b"\x88", b(fortran.tobytes(order="F"))) + BUILD,
    )
    path.write_bytes(pk(body, proto=3))
    got = read_pdparams(path)
    for name, want in (("big", big), ("fortran", fortran)):
        assert type(got[name]) is np.ndarray and got[name].dtype.isnative and got[name].flags.c_contiguous
        np.testing.assert_array_equal(got[name], want)


# --- Code execution attempts through other opcodes ------------------------------------------------


def _code_attempts(marker: Path) -> dict[str, bytes]:
    cmd = marker_command(marker)
    return {
        "inst": b"(" + cmd + b"ios\nsystem\n",
        "obj": b"(" + g("os", "system") + cmd + b"o",
        "newobj": g("os", "system") + t(cmd) + b"\x81",
        "reduce_on_a_token": call(g("numpy", "ndarray"), t(i(2**30))),
        "reduce_on_a_storage_type": call(g("torch", "FloatStorage"), i(10**9)),
        "from_type_with_other_func": call(
            g("torch._tensor", "_rebuild_from_type_v2"), g("builtins", "dict"), g("torch", "Tensor"), t(), d()
        ),
        "from_type_subclass": call(
            g("torch._tensor", "_rebuild_from_type_v2"),
            g("torch._utils", "_rebuild_tensor_v2"),
            g("collections", "OrderedDict"),
            t(),
            d(),
        ),
        "extension_code": b"\x82\x01",
        "persistent_id_in_pdparams": t(s("storage")) + b"Q",
        "stack_global": s("os") + s("system") + b"\x93" + t(cmd) + b"R",
        "name_with_a_newline": s("os\nimport") + s("system\r") + b"\x93" + t(cmd) + b"R",
        "bytes_bomb": call(g("builtins", "bytes"), i(10**12)),
        "codecs_other_encoding": call(g("_codecs", "encode"), s("x"), s("rot13")),
        "eval_other_expression": call(g("builtins", "eval"), s("__import__('os')"), d()),
    }


@pytest.mark.parametrize(
    "case",
    sorted(_code_attempts(Path("m"))),
)
def test_code_attempts_are_refused_and_run_nothing(tmp_path, case):
    marker = tmp_path / "marker"
    body = _code_attempts(marker)[case]
    path = tmp_path / ("model_state.pdparams" if case.startswith(("eval", "persistent")) else "w.bin")
    if path.suffix == ".bin":
        zip_state(path, d(w=body))
    else:
        path.write_bytes(pk(d(w=body)))
    refused(path, UnsafePickleError)
    assert not marker.exists()


# --- Geometry: offsets, sizes, strides ------------------------------------------------------------

GEOMETRY = {
    "offset_past_the_end": ((4, (1,), (1,)), "reaches element 4 of a storage of 4"),
    "stride_past_the_end": ((0, (2,), (4,)), "reaches element 4"),
    "size_past_the_end": ((1, (2, 2), (2, 1)), "reaches element 4"),
    "negative_stride": ((3, (4,), (-1,)), "bad tensor geometry"),
    "negative_size": ((0, (-1,), (1,)), "bad tensor geometry"),
    "negative_offset": ((-1, (2,), (1,)), "bad tensor geometry"),
    "bool_size": ((0, (True,), (1,)), "bad tensor geometry"),
}


@pytest.mark.parametrize("case", sorted(GEOMETRY))
def test_out_of_bounds_geometry_is_refused_not_read(tmp_path, case):
    (offset, size, stride), match = GEOMETRY[case]
    refused(zip_state(tmp_path / "w.bin", one_tensor(offset, size, stride)), ModelUnavailableError, match)


def test_storage_records_are_checked(tmp_path):
    cases = {
        "not_a_storage_type": t(s("storage"), g("builtins", "int"), s("0"), s("cpu"), i(4)) + b"Q",
        "negative_numel": storage("0", -1),
        "key_not_a_string": t(s("storage"), g("torch", "FloatStorage"), t(s("0")), s("cpu"), i(4)) + b"Q",
    }
    for case, record in cases.items():
        path = zip_state(tmp_path / f"{case}.bin", d(w=tensor(record, 0, (1,), (1,))))
        refused(path, UnsafePickleError, "storage record")
    missing = zip_state(tmp_path / "missing.bin", d(w=tensor(storage("9", 4), 0, (1,), (1,))))
    refused(missing, ModelUnavailableError, "KeyError")
    short = zip_state(tmp_path / "short.bin", d(w=tensor(storage("0", 100), 0, (1,), (1,))))
    refused(short, ModelUnavailableError, "holds 16 bytes, not 400")


def test_stride_zero_and_overlapping_views_within_the_cap_load(tmp_path):
    """Broadcast (stride-0) and overlapping views are fine while their copies stay under the cap."""
    body = d(
        b=tensor(storage("0", 4), 1, (3, 2), (0, 1)),
        o=tensor(storage("0", 4), 0, (3, 2), (1, 1)),
    )
    got = read_torch_bin(zip_state(tmp_path / "w.bin", body))
    np.testing.assert_array_equal(got["b"], [[1, 2]] * 3)
    np.testing.assert_array_equal(got["o"], [[0, 1], [1, 2], [2, 3]])
    assert all(a.flags.c_contiguous and a.flags.owndata for a in got.values())


# --- Nesting and self-reference -------------------------------------------------------------------


def test_self_referencing_containers_are_one_line(tmp_path):
    path = tmp_path / "model_state.pdparams"
    path.write_bytes(pk(b"}q\x00" + s("me") + b"h\x00s"))  # d = {}; d["me"] = d
    refused(path, PickleLimitError, "a container holds itself")
    path.write_bytes(pk(b"}" + s("l") + b"]q\x00h\x00as"))  # {"l": l} with l = [l]
    refused(path, PickleLimitError, "a container holds itself")


def test_shared_subtrees_cannot_blow_up_the_names(tmp_path):
    """A dict whose two keys share a subtree, 40 levels deep, would flatten to 2**40 names."""
    body = b"}"  # the innermost dict
    for level in range(40):
        body += (
            b"q"
            + bytes([level])
            + b"}("
            + s("a")
            + b"h"
            + bytes([level])
            + s("b")
            + b"h"
            + bytes([level])
            + b"u"
        )
    path = tmp_path / "model_state.pdparams"
    path.write_bytes(pk(body))
    refused(path, PickleLimitError, "past")


# --- The child interpreter: crashes and bombs, under RLIMIT_AS --------------------------------------

_CHILD = """
import json, resource, sys
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from mgtoolkit.models.safe_pickle import read_pickled_weights
from mgtoolkit.io.safetensors_io import read_file
out = {}
for case, path in json.loads(sys.argv[1]).items():
    reader = read_file if path.endswith(".safetensors") else read_pickled_weights
    try:
        reader(path)
        out[case] = ["loaded", ""]
    except BaseException as exc:
        out[case] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""
AS_LIMIT = 1536 * 1024**2


def _deep(opener: bytes, closer: bytes, depth: int) -> bytes:
    return opener * depth + closer * depth


def _bomb_files(root: Path) -> dict[str, tuple[Path, type, str]]:
    """Name -> (file, expected error class, text the message must hold)."""
    files: dict[str, tuple[Path, type, str]] = {}

    def add(name: str, path: Path, kind: type, match: str) -> None:
        files[name] = (path, kind, match)

    gib = 2**30
    add(
        "stride_zero",
        zip_state(root / "s0.bin", one_tensor(0, (gib // 4,), (0,), numel=1)),
        PickleLimitError,
        "past",
    )
    views = d(**{f"v{n}": tensor(storage("0", 2**16), 0, (2**16,), (1,)) for n in range(5000)})
    add(
        "many_views", write_zip(root / "views.bin", pk(views), {"0": floats(2**16)}), PickleLimitError, "past"
    )
    deflated = root / "deflated.bin"
    with zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("archive/data.pkl", pk(one_tensor(0, (1,), (1,), numel=2**26)))
        with archive.open("archive/data/0", "w", force_zip64=True) as member:
            chunk = bytes(2**24)
            for _ in range(16):  # 256 MiB of zeros, about 256 KB deflated
                member.write(chunk)
    add("deflated_member", deflated, PickleLimitError, "inflates to 268,435,456 bytes")
    bare = pk(d(w=call(g("numpy", "ndarray"), t(i(gib)))))
    add("bare_ndarray", _write(root / "bare.pdparams", bare), UnsafePickleError, "a call of a numpy.ndarray")
    tiny = pk(call(g("numpy.core.multiarray", "_reconstruct"), g("numpy", "ndarray"), t(i(gib)), b(b"b")))
    assert len(tiny) < 100, len(tiny)
    add(
        "44_bytes_to_1_GiB",
        _write(root / "tiny.pdparams", tiny),
        UnsafePickleError,
        "_reconstruct other than",
    )
    huge_shape = pk(d(w=np_array(np.zeros(1, np.float32)).replace(t(i(1)), t(i(gib)), 1)))
    add(
        "array_shape_bomb",
        _write(root / "shape.pdparams", huge_shape),
        ModelUnavailableError,
        "array data of 4",
    )
    sets = pk(b"(" + b"\x8f" * 2**20 + b"l" + d())
    add("empty_set_spam", _write(root / "sets.pdparams", sets), PickleLimitError, "past")
    long4 = pk(b"\x8b" + struct.pack("<i", 2**30))
    add("long4_bomb", _write(root / "long.pdparams", long4), UnsafePickleError, "an integer of")
    add(
        "deep_lists",
        _write(root / "deep.pdparams", pk(d(w=_deep(b"](", b"e", 200_000)))),
        PickleLimitError,
        "deep",
    )
    # hashing a 200,000-deep tuple overflows the C stack (a dict key, a set item): padding
    # (bytes popped at once) makes the file big enough for the tuples to stay under the cap
    pad = b"B" + struct.pack("<I", 1 << 20) + bytes(1 << 20) + b"0"
    deep_tuple = pk(pad + b"}(" + b")" + b"\x85" * 200_000 + i(1) + b"u")
    add("deep_tuple_key", _write(root / "hash.pdparams", deep_tuple), UnsafePickleError, "dict key")
    deep_set = pk(pad + b"(" + b")" + b"\x85" * 200_000 + b"\x91")
    add("deep_tuple_in_frozenset", _write(root / "fset.pdparams", deep_set), UnsafePickleError, "set item")
    legacy = root / "legacy_s0.pt"
    _write_legacy(legacy, gib // 4)
    add("legacy_stride_zero", legacy, PickleLimitError, "past")
    st = root / "huge_header.safetensors"
    st.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    add("safetensors_huge_header", st, SafetensorsError, "header size")
    deep_json = root / "deep_json.safetensors"
    raw = b"[" * 100_000 + b"]" * 100_000
    deep_json.write_bytes(len(raw).to_bytes(8, "little") + raw)
    add("safetensors_deep_json", deep_json, SafetensorsError, "RecursionError")
    return files


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _write_legacy(path: Path, size: int) -> None:
    """The pre-1.6 torch layout: magic, version, sys info, the object, its keys, the storages."""
    rec = t(s("storage"), g("torch", "FloatStorage"), s("0"), s("cpu"), i(1), NONE) + b"Q"
    obj = d(w=tensor(rec, 0, (size,), (0,)))
    parts = [pk(i(0x1950A86A20F9469CFC6C)), pk(i(1001)), pk(d()), pk(obj), pk(b"](" + s("0") + b"e")]
    path.write_bytes(b"".join(parts) + struct.pack("<q", 1) + floats(1))


@pytest.fixture(scope="module")
def child_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bombs")
    files = _bomb_files(root)
    args = json.dumps({name: str(path) for name, (path, _, _) in files.items()})
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, args, str(AS_LIMIT)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr and "Fatal" not in done.stderr, done.stderr[-2000:]
    return files, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "case",
    [
        "stride_zero",
        "many_views",
        "deflated_member",
        "bare_ndarray",
        "44_bytes_to_1_GiB",
        "array_shape_bomb",
        "empty_set_spam",
        "long4_bomb",
        "deep_lists",
        "deep_tuple_key",
        "deep_tuple_in_frozenset",
        "legacy_stride_zero",
        "safetensors_huge_header",
        "safetensors_deep_json",
    ],
)
def test_bombs_and_crashers_end_in_our_line_under_a_memory_limit(child_results, case):
    files, results = child_results
    path, kind, match = files[case]
    name, message = results[case]
    assert name == kind.__name__, f"{name}: {message}"
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert match in message, message


def test_a_clean_file_of_many_tiny_tensors_is_within_the_cap(tmp_path):
    """The worst honest ratio: a pdparams of 20,000 scalars takes about 21x its size in Python objects."""
    from fixtures.torch_files import write_pdparams

    state = {f"l.{n}.w": np.asarray(n, dtype=np.float32) for n in range(20_000)}
    write_pdparams(tmp_path / "s.pdparams", state, protocol=4)
    got = read_pdparams(tmp_path / "s.pdparams")
    assert len(got) == 20_000 and got["l.19999.w"] == np.float32(19_999)


def test_the_cap_follows_max_bytes_and_the_file_size(tmp_path):
    path = zip_state(tmp_path / "w.bin", one_tensor(0, (4,), (1,)))
    assert read_torch_bin(path, max_bytes=10_000)["w"].shape == (4,)
    refused(path, PickleLimitError, "past 100 bytes", reader=lambda p: read_torch_bin(p, max_bytes=100))
    views = d(**{f"v{n}": tensor(storage("0", 2**14), 0, (2**14,), (1,)) for n in range(80)})
    small = write_zip(tmp_path / "views.bin", pk(views), {"0": floats(2**14)})  # 64 KiB stored, 5 MiB asked
    message = refused(small, PickleLimitError, "32x its size plus 1 MiB")
    assert f"{small.stat().st_size:,} bytes" in message


# --- Damaged bytes anywhere: still one line -----------------------------------------------------------


def _mutated(source: Path, rng, out: Path) -> Path:
    """``source`` with 1-4 random bytes changed (inside ``data.pkl`` for a zip checkpoint)."""
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
        name = next(n for n in members if n.endswith("data.pkl"))
        members[name] = _flip(members[name], rng)
        with zipfile.ZipFile(out, "w") as archive:
            for member, raw in members.items():
                archive.writestr(member, raw)
    else:
        out.write_bytes(_flip(source.read_bytes(), rng))
    return out


def _flip(raw: bytes, rng) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.integers(1, 5)):
        data[rng.integers(len(data))] = rng.integers(256)
    return bytes(data)


def test_randomly_damaged_files_give_arrays_or_one_line(tmp_path):
    """400 seeded mutations of clean files of each layout: plain arrays, or our one-line error."""
    from fixtures.torch_files import write_pdparams, write_torch_bin, write_torch_legacy

    state = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.arange(3),
        "m": np.array([True, False]),
    }
    sources = [tmp_path / "z.bin", tmp_path / "l.pt", tmp_path / "p2.pdparams", tmp_path / "p4.pdparams"]
    write_torch_bin(sources[0], state)
    write_torch_legacy(sources[1], state)
    write_pdparams(sources[2], state, style="tensors", protocol=2)
    write_pdparams(sources[3], state, protocol=4)
    rng = np.random.default_rng(24)
    for n in range(400):
        source = sources[n % len(sources)]
        path = _mutated(source, rng, tmp_path / f"m{n}{source.suffix}")
        try:
            got = read_pickled_weights(path)
        except ModelUnavailableError as exc:
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        else:
            assert all(
                type(v) is np.ndarray and v.flags.c_contiguous and v.dtype.isnative for v in got.values()
            )
        path.unlink()
