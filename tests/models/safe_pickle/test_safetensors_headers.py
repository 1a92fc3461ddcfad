"""Issue 24 (2): odd safetensors headers give one line from every reader, never a crash; a clean
file round-trips, bfloat16 bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pickle_opcodes import floats, refused

from mgtoolkit.io.safetensors_io import SafetensorsError


def _st(path: Path, header, data: bytes = b"", size: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes((len(raw) if size is None else size).to_bytes(8, "little") + raw + data)
    return path


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


ODD_HEADERS = {
    "a_list": ([1, 2], "not an object"),
    "a_string": ("x", "not an object"),
    "entry_not_a_dict": ({"w": [1]}, "is not {dtype"),
    "entry_missing_keys": ({"w": {"dtype": "F32"}}, "is not {dtype"),
    "unknown_dtype": ({"w": _entry("F8_E4M3")}, "has dtype"),
    "dtype_not_a_string": ({"w": _entry(["F32"])}, "has dtype"),
    "negative_shape": ({"w": _entry(shape=(-2,))}, "non-negative ints"),
    "bool_shape": ({"w": _entry(shape=(True, 2))}, "non-negative ints"),
    "shape_not_a_list": ({"w": {**_entry(), "shape": 2}}, "non-negative ints"),
    "offsets_past_eof": ({"w": _entry(offsets=(0, 800))}, "outside"),
    "offsets_reversed": ({"w": _entry(offsets=(8, 0))}, "outside"),
    "offsets_not_ints": ({"w": _entry(offsets=(0, 8.0))}, "two ints"),
    "size_mismatch": ({"w": _entry(shape=(3,))}, "not shape x itemsize"),
    "overlapping": ({"a": _entry(offsets=(0, 8)), "b": _entry(offsets=(4, 12))}, "overlap"),
    "metadata_not_a_dict": ({"__metadata__": ["pt"], "w": _entry()}, "__metadata__"),
    "metadata_not_strings": ({"__metadata__": {"format": 1}, "w": _entry()}, "__metadata__"),
    "not_json": (b"{not json", "JSONDecodeError"),
    "not_utf8": (b'{"\xff": 1}', "UnicodeDecodeError"),
}


@pytest.mark.parametrize("case", sorted(ODD_HEADERS))
def test_odd_safetensors_headers_are_one_line_everywhere(tmp_path, case):
    from safetensors import safe_open

    from mgtoolkit.accel.lowmem import PlainSafetensors
    from mgtoolkit.models import weights

    header, match = ODD_HEADERS[case]
    path = _st(tmp_path / "model.safetensors", header, floats(4))
    readers = {
        "weights": weights._read_safetensors,
        "format": weights._safetensors_format,
        "weight_files": lambda p: weights.weight_files(p.parent),
        "lowmem": lambda p: PlainSafetensors(p, mapped=safe_open),
    }
    for reader in readers.values():
        refused(path, SafetensorsError, match, reader=reader)


@pytest.mark.parametrize(
    ("case", "size"),
    [("longer_than_the_file", 10_000), ("past_the_cap", 2**63 - 1), ("zero", 0), ("short_file", None)],
)
def test_odd_header_lengths(tmp_path, case, size):
    from mgtoolkit.io.safetensors_io import read_file

    path = _st(tmp_path / "w.safetensors", {"w": _entry()}, floats(2), size=size)
    if size is None:
        path.write_bytes(b"\x01\x02")
    refused(path, SafetensorsError, "", reader=read_file)


def test_safetensors_round_trip_and_bfloat16_bits(tmp_path):
    from safetensors.numpy import load_file

    from mgtoolkit.io.safetensors_io import read_file, read_header, write_file

    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "big_endian": np.arange(3, dtype=">i8"),
        "mask": np.array([True, False]),
        "scalar": np.asarray(2.5, np.float16),
        "empty": np.zeros((0, 2), np.uint8),
    }
    path = tmp_path / "w.safetensors"
    write_file(path, tensors, metadata={"format": "np"})
    assert not list(tmp_path.glob(".*.tmp"))
    theirs, ours = load_file(str(path)), read_file(path)
    assert list(ours) == sorted(tensors) and read_header(path).metadata == {"format": "np"}
    for name, want in tensors.items():
        assert ours[name].dtype == theirs[name].dtype == want.dtype.newbyteorder("=")
        np.testing.assert_array_equal(ours[name], want)
        np.testing.assert_array_equal(theirs[name], want)
    bits = np.array([0x3FC0, 0xFF80, 0x7FC1], dtype="<u2")  # 1.5, -inf, a NaN with a payload
    _st(path, {"b": _entry("BF16", (3,), (0, 6))}, bits.tobytes())
    assert read_file(path, widen_bf16=False)["b"].tobytes() == bits.tobytes()
    widened = read_file(path)["b"]
    assert widened.dtype == np.float32 and widened.view(np.uint32).tolist() == [
        b << 16 for b in bits.tolist()
    ]
