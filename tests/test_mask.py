"""Tests for frame masking (RFC 6455 §5.3): the C accelerator and the Python fallback.

Every behavioural test runs against both implementations. The C one is
skipped when ``wskit._speedups`` was not built, except under ``CI=true``,
where a missing accelerator is a failure.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wskit.mask
from wskit.mask import py_apply_mask

MaskFunc = Callable[..., bytes]

try:
    from wskit._speedups import apply_mask as _c_apply_mask
except ImportError as exc:  # not built: no compiler, or WSKIT_NO_EXTENSIONS=1
    c_apply_mask: MaskFunc | None = None
    C_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
else:
    c_apply_mask = _c_apply_mask
    C_IMPORT_ERROR = ""

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_c() -> MaskFunc:
    """Return the C ``apply_mask``; skip (fail under CI=true) when it is not built."""
    if c_apply_mask is None:
        message = (
            "wskit._speedups is not built (no C compiler at install time, or "
            f"WSKIT_NO_EXTENSIONS=1): {C_IMPORT_ERROR}. Rebuild with `pip install -e .`."
        )
        if IN_CI:
            pytest.fail(f"CI=true requires the C accelerator: {message}")
        pytest.skip(message)
    return c_apply_mask


IMPLS = ["python", "c"]


@pytest.fixture(params=IMPLS)
def apply_mask(request: pytest.FixtureRequest) -> MaskFunc:
    """Each implementation of ``apply_mask`` in turn."""
    if request.param == "python":
        return py_apply_mask
    return require_c()


def reference_mask(data: bytes, mask: bytes) -> bytes:
    """RFC 6455 §5.3, literally: octet i XOR masking-key octet (i MOD 4)."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_known_vector(apply_mask: MaskFunc) -> None:
    # RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
    assert apply_mask(b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("7f9f4d5158")


def test_all_lengths_and_alignments_match_reference(apply_mask: MaskFunc) -> None:
    rng = random.Random(6455)
    masks = [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", bytes(range(1, 5))]
    masks += [rng.randbytes(4) for _ in range(4)]
    backing = bytearray(rng.randbytes(70 + 8))
    for mask in masks:
        for length in range(71):
            for offset in range(8):  # misaligned starts within one buffer
                view = memoryview(backing)[offset : offset + length]
                expected = reference_mask(bytes(view), mask)
                assert apply_mask(view, mask) == expected, (mask.hex(), length, offset)


@pytest.mark.parametrize(
    "size",
    [65535, 65536, 65537, 1 << 20, (1 << 20) + 3, (3 << 20) + 5],
    ids=lambda n: f"{n}B",
)
def test_large_inputs_match_reference(apply_mask: MaskFunc, size: int) -> None:
    # Sizes around the C version's 64 KiB GIL-release threshold, and larger.
    data = random.Random(size).randbytes(size)
    mask = b"\x9a\x01\xfe\x7c"
    expected = bytes(a ^ b for a, b in zip(data, itertools.cycle(mask)))
    assert apply_mask(data, mask) == expected


def test_returns_bytes_for_every_input_type(apply_mask: MaskFunc) -> None:
    mask = b"\x01\x02\x03\x04"
    payload = b"payload bytes!"
    expected = reference_mask(payload, mask)
    for data in (payload, bytearray(payload), memoryview(payload), memoryview(bytearray(payload))):
        result = apply_mask(data, mask)
        assert type(result) is bytes, type(data)
        assert result == expected, type(data)


def test_empty_data(apply_mask: MaskFunc) -> None:
    assert apply_mask(b"", b"abcd") == b""
    assert apply_mask(bytearray(), b"abcd") == b""


def test_does_not_modify_input(apply_mask: MaskFunc) -> None:
    data = bytearray(b"unchanged, please" * 10)
    before = bytes(data)
    apply_mask(data, b"\xaa\xbb\xcc\xdd")
    assert data == before


def test_mask_may_be_bytearray(apply_mask: MaskFunc) -> None:
    assert apply_mask(b"abcdefgh", bytearray(b"1234")) == reference_mask(b"abcdefgh", b"1234")


def test_non_contiguous_memoryview_is_masked_like_its_bytes(apply_mask: MaskFunc) -> None:
    source = bytes(range(200))
    strided = memoryview(source)[1::3]
    assert not strided.contiguous
    mask = b"\x10\x20\x30\x40"
    assert apply_mask(strided, mask) == reference_mask(bytes(strided), mask)


@pytest.mark.parametrize("impl", ["python", "c"])
def test_multibyte_item_memoryview_is_masked_bytewise(impl: str) -> None:
    func = py_apply_mask if impl == "python" else require_c()
    view = memoryview(array("I", range(1000, 1010)))
    assert view.itemsize == 4
    mask = b"\x01\x02\x03\x04"
    assert func(view, mask) == reference_mask(view.tobytes(), mask)


@pytest.mark.parametrize("bad_mask", [b"", b"abc", b"abcde", b"abcdefgh"], ids=len)
def test_mask_must_be_four_bytes(apply_mask: MaskFunc, bad_mask: bytes) -> None:
    with pytest.raises(ValueError, match=rf"mask must be 4 bytes, got {len(bad_mask)}"):
        apply_mask(b"some data", bad_mask)


def test_wrong_mask_length_rejected_even_for_empty_data(apply_mask: MaskFunc) -> None:
    with pytest.raises(ValueError, match="mask must be 4 bytes"):
        apply_mask(b"", b"abc")


@pytest.mark.parametrize("bad_data", ["text", 1234, None], ids=lambda v: type(v).__name__)
def test_data_must_be_bytes_like(apply_mask: MaskFunc, bad_data: object) -> None:
    with pytest.raises(TypeError):
        apply_mask(bad_data, b"abcd")


def test_mask_must_be_bytes_like(apply_mask: MaskFunc) -> None:
    with pytest.raises(TypeError):
        apply_mask(b"some data", 1234)


def test_keyword_arguments(apply_mask: MaskFunc) -> None:
    expected = reference_mask(b"kw", b"wxyz")
    assert apply_mask(data=b"kw", mask=b"wxyz") == expected
    assert apply_mask(b"kw", mask=b"wxyz") == expected


def test_bad_call_signatures(apply_mask: MaskFunc) -> None:
    with pytest.raises(TypeError):
        apply_mask(b"x")
    with pytest.raises(TypeError):
        apply_mask(b"x", b"abcd", b"extra")
    with pytest.raises(TypeError):
        apply_mask(b"x", b"abcd", mask=b"abcd")
    with pytest.raises(TypeError):
        apply_mask(b"x", b"abcd", key=b"abcd")


masks = st.binary(min_size=4, max_size=4)


@given(data=st.binary(max_size=300), mask=masks)
def test_python_masking_twice_is_identity(data: bytes, mask: bytes) -> None:
    assert py_apply_mask(py_apply_mask(data, mask), mask) == data


@given(data=st.binary(max_size=300), mask=masks)
def test_python_matches_reference(data: bytes, mask: bytes) -> None:
    assert py_apply_mask(data, mask) == reference_mask(data, mask)


@given(data=st.binary(max_size=300), mask=masks, start=st.integers(0, 7))
def test_c_matches_python(data: bytes, mask: bytes, start: int) -> None:
    c_mask = require_c()
    view = memoryview(data)[start:]
    assert c_mask(view, mask) == py_apply_mask(bytes(view), mask)
    assert c_mask(c_mask(data, mask), mask) == data


def test_c_module_exposes_documented_function() -> None:
    c_mask = require_c()
    assert c_mask.__name__ == "apply_mask"
    assert "4-byte mask" in (c_mask.__doc__ or "")


def test_mask_module_selects_c_when_built() -> None:
    if os.environ.get("WSKIT_NO_SPEEDUPS"):
        pytest.skip("WSKIT_NO_SPEEDUPS is set in this test run")
    require_c()
    assert wskit.mask.USING_SPEEDUPS is True
    assert wskit.mask.apply_mask is c_apply_mask


def _probe_in_subprocess(env_overrides: dict[str, str | None]) -> list[str]:
    """Import wskit.mask in a fresh interpreter and report which implementation it picked."""
    env = dict(os.environ)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    # Find the same wskit as this process, installed or not.
    package_root = str(Path(wskit.mask.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    code = (
        "import wskit.mask as m\n"
        "print(m.USING_SPEEDUPS)\n"
        "print(m.apply_mask is m.py_apply_mask)\n"
        "print(m.apply_mask(b'abcdef', b'\\x01\\x02\\x03\\x04').hex())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_env_switch_forces_python_fallback() -> None:
    using, is_python, masked = _probe_in_subprocess({"WSKIT_NO_SPEEDUPS": "1"})
    assert using == "False"
    assert is_python == "True"
    assert masked == reference_mask(b"abcdef", b"\x01\x02\x03\x04").hex()


def test_without_env_switch_c_is_selected_in_a_fresh_process() -> None:
    require_c()
    using, is_python, masked = _probe_in_subprocess({"WSKIT_NO_SPEEDUPS": None})
    assert using == "True"
    assert is_python == "False"
    assert masked == reference_mask(b"abcdef", b"\x01\x02\x03\x04").hex()


@pytest.mark.parametrize("impl", ["python", "c"])
@pytest.mark.parametrize("size", [0, 1, 5, 125, 126, 70_000])
def test_mask_frame_is_header_key_and_masked_payload(impl: str, size: int) -> None:
    import wskit.mask

    if impl == "python":
        func = wskit.mask.py_mask_frame
    else:
        require_c()
        from wskit._speedups import mask_frame as func
    data = os.urandom(size)
    header = b"\x81\xfe"
    key = b"\x01\x02\x03\x04"
    assert func(header, data, key) == header + key + reference_mask(data, key)
    with pytest.raises(ValueError):
        func(header, data, b"\x01\x02\x03")


# -- Gather: a large frame's payload gathered in the bytes object it becomes --


def require_gather() -> type:
    """Return the C ``Gather`` type; skip (fail under CI=true) as ``require_c`` does."""
    require_c()
    from wskit._speedups import Gather

    return Gather


def test_gather_returns_what_was_written_unmasked() -> None:
    gather = require_gather()(10)
    with memoryview(gather) as view:
        assert not view.readonly and len(view) == 10
        view[:] = b"0123456789"
    assert gather.exports == 0
    assert gather.take(b"\x00\x00\x00\x01") == py_apply_mask(b"0123456789", b"\x00\x00\x00\x01")
    assert not gather.copied  # no view left: handed out as it is


def test_gather_without_a_mask_returns_the_bytes_as_written() -> None:
    gather = require_gather()(3)
    memoryview(gather)[:] = b"abc"  # the temporary view is released at once
    data = gather.take(None)
    assert data == b"abc" and type(data) is bytes


def test_gather_counts_the_views_it_exported() -> None:
    gather = require_gather()(8)
    first = memoryview(gather)
    part = memoryview(gather)[2:]  # its own export; the slice keeps it
    assert gather.exports == 2
    first.release()
    assert gather.exports == 1
    del part
    assert gather.exports == 0


def test_a_view_left_at_take_gets_a_copy_it_cannot_change() -> None:
    gather = require_gather()(6)
    left = memoryview(gather)
    left[:] = b"abcdef"
    data = gather.take(b"\x01\x01\x01\x01")
    assert data == py_apply_mask(b"abcdef", b"\x01\x01\x01\x01") and gather.copied
    left[:] = b"zzzzzz"  # writes land in the original, which nothing hands out
    assert data == py_apply_mask(b"abcdef", b"\x01\x01\x01\x01")
    left.release()
    assert gather.exports == 0


def test_gather_hands_out_its_bytes_only_once() -> None:
    gather = require_gather()(4)
    memoryview(gather)[:] = b"once"
    assert gather.take() == b"once"
    with pytest.raises(ValueError, match="taken already"):
        gather.take()
    with pytest.raises(BufferError, match="taken"):
        memoryview(gather)


def test_gather_rejects_a_bad_mask_and_stays_usable() -> None:
    gather = require_gather()(4)
    memoryview(gather)[:] = b"keep"
    with pytest.raises(ValueError, match="mask must be 4 bytes, got 3"):
        gather.take(b"abc")
    with pytest.raises(TypeError, match="bytes-like"):
        gather.take("abcd")
    with pytest.raises(TypeError, match="at most 1 argument"):
        gather.take(b"abcd", b"abcd")
    assert gather.take(b"\x00\x00\x00\x00") == b"keep"


def test_gather_length_is_checked() -> None:
    gather_type = require_gather()
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        gather_type(-1)
    with pytest.raises(TypeError):
        gather_type("10")
    with pytest.raises(MemoryError):
        gather_type(sys.maxsize - 100)
    assert gather_type(0).take(b"abcd") == b""


@given(data=st.binary(max_size=3000), mask=st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
       cuts=st.lists(st.integers(0, 3000), max_size=6), keep_view=st.booleans())
def test_gather_gives_the_written_bytes_masked_whatever_the_writes(data: bytes, mask: bytes | None, cuts: list[int],
                                                                   keep_view: bool) -> None:
    gather = require_gather()(len(data))
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in itertools.pairwise(points):  # written piece by piece, as a frame arrives
        memoryview(gather)[a:b] = data[a:b]
    left = memoryview(gather) if keep_view else None
    result = gather.take(mask)
    assert result == (data if mask is None else py_apply_mask(data, mask))
    if left is not None and len(left):
        left[0] ^= 0xFF
        assert result == (data if mask is None else py_apply_mask(data, mask))


# -- Cursor: where the next piece of a large frame goes (C, and its pure-Python twin) --


def cursor_of(impl: str) -> Any:
    """The gathering cursor of an implementation; the C one as ``require_c`` has it."""
    if impl == "python":
        return wskit.mask.PyCursor
    require_c()
    from wskit._speedups import Cursor

    return Cursor


@pytest.fixture(params=IMPLS)
def cursor_type(request: pytest.FixtureRequest) -> Any:
    """Each implementation of the gathering cursor in turn."""
    return cursor_of(request.param)


def test_wskit_mask_picks_the_c_cursor_when_built() -> None:
    if wskit.mask.USING_SPEEDUPS:
        from wskit._speedups import Cursor

        assert wskit.mask.Cursor is Cursor
    else:
        assert wskit.mask.Cursor is wskit.mask.PyCursor


# A piece: its bytes and how it is given to put() (the types the cursor takes).
piece_kinds = st.sampled_from(["bytes", "bytearray", "view", "view-of-bytearray"])


def as_kind(data: bytes, kind: str) -> Any:
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "view":
        return memoryview(data)
    return memoryview(bytearray(data))


# Targets: a bytearray, a slice of a longer one (the kept gathering buffer) and, with the C accelerator, a Gather.
TARGETS = ["bytearray", "slice", *(["gather"] if wskit.mask.Gather is not None else [])]


@pytest.mark.parametrize("impl", IMPLS)
@given(size=st.integers(0, 400),
       steps=st.lists(st.tuples(st.sampled_from(["put", "advance"]), st.binary(max_size=150), piece_kinds),
                      max_size=12),
       target=st.sampled_from(TARGETS))
def test_cursor_does_what_slice_assignments_at_a_moving_offset_do(
        impl: str, size: int, steps: list[tuple[str, bytes, str]], target: str) -> None:
    cursor_type = cursor_of(impl)
    # The reference: a bytearray, an offset and what is still due, updated by hand.
    backing = bytearray(b"\xee" * (size + 7))  # bytes past the target's end must never change
    buffer: Any = memoryview(backing)[:size] if target == "slice" else bytearray(b"\xee" * size)
    if target == "gather":
        buffer = require_gather()(size)
        memoryview(buffer)[:] = b"\xee" * size
    expected = bytearray(b"\xee" * size)
    at, due = 0, size
    cursor = cursor_type(buffer)
    for op, data, kind in steps:
        n = len(data)
        if op == "put":
            taken = cursor.put(as_kind(data, kind))
            assert taken is (n < due)  # strictly shorter: the piece that completes the frame is refused
        else:  # written some other way (a transport reading into the view), then accounted for
            if n <= due:
                with memoryview(buffer) as view:
                    view[at:at + n] = data
                assert cursor.advance(n) == due - n
            else:
                with pytest.raises(ValueError, match=f"{due} bytes are due"):
                    cursor.advance(n)
            taken = n <= due
        if taken:
            expected[at:at + n] = data
            at, due = at + n, due - n
        assert (cursor.offset, cursor.remaining) == (at, due)
    cursor.release()
    assert (cursor.offset, cursor.remaining) == (at, 0)
    if target == "gather":
        assert buffer.take(None) == expected and not buffer.copied  # the cursor's export was released
    else:
        assert bytes(buffer) == expected
    assert backing[size:] == b"\xee" * 7


def test_cursor_refuses_the_piece_that_completes_the_frame_and_longer_ones(cursor_type: Any) -> None:
    buffer = bytearray(b"." * 8)
    cursor = cursor_type(buffer)
    assert cursor.put(b"abc") is True
    assert cursor.put(b"12345") is False  # exactly what is due: left to the general path
    assert cursor.put(b"123456") is False  # longer
    assert buffer == b"abc....." and (cursor.offset, cursor.remaining) == (3, 5)
    assert cursor.put(b"") is True  # nothing, while bytes are due
    assert cursor.put(b"1234") is True
    assert buffer == b"abc1234." and (cursor.offset, cursor.remaining) == (7, 1)
    assert cursor.put(b"") is True and cursor.put(b"x") is False
    assert cursor_type(bytearray()).put(b"") is False  # nothing is due: even empty bytes complete it


@pytest.mark.parametrize("data", [
    memoryview(b"abcdef")[::2],  # not contiguous
    memoryview(b"abcdefgh").cast("I"),  # not bytes
    memoryview(b"abcdefgh").cast("b"),  # signed bytes: not plain bytes either
    memoryview(b"abcdefgh").cast("B", (2, 4)),  # two dimensions
    memoryview(array("B", b"ab")).cast("c"),  # characters
    array("B", b"ab"),  # a buffer of another type
    type("Bytes", (bytes,), {})(b"ab"),  # a subclass of bytes
    "ab",
    12,
    None,
], ids=["strided", "format-I", "format-b", "2d", "format-c", "array", "bytes-subclass", "str", "int", "None"])
def test_cursor_refuses_what_is_not_plain_bytes(cursor_type: Any, data: Any) -> None:
    buffer = bytearray(b"." * 16)
    cursor = cursor_type(buffer)
    assert cursor.put(data) is False
    assert buffer == b"." * 16 and (cursor.offset, cursor.remaining) == (0, 16)


def test_cursor_put_of_a_released_view_raises_as_reading_it_does(cursor_type: Any) -> None:
    view = memoryview(b"ab")
    view.release()
    cursor = cursor_type(bytearray(4))
    with pytest.raises(ValueError, match="released"):
        cursor.put(view)
    assert (cursor.offset, cursor.remaining) == (0, 4)


def test_cursor_copies_a_view_of_its_own_target(cursor_type: Any) -> None:
    buffer = bytearray(b"0123456789")
    cursor = cursor_type(buffer)
    cursor.advance(2)
    assert cursor.put(memoryview(buffer)[3:8])  # overlapping source and destination
    assert buffer == b"0134567789"


def test_cursor_refuses_a_target_it_cannot_write(cursor_type: Any) -> None:
    with pytest.raises(BufferError):
        cursor_type(b"read-only")
    with pytest.raises(BufferError):
        cursor_type(memoryview(bytearray(8)).toreadonly())
    with pytest.raises(BufferError):
        cursor_type(memoryview(bytearray(8))[::2])  # not contiguous
    with pytest.raises(TypeError):
        cursor_type(8)
    with pytest.raises(TypeError):
        cursor_type()
    # Any writable contiguous buffer: its bytes are counted, not its items.
    items = array("I", [0, 0])
    cursor = cursor_type(memoryview(items))
    assert cursor.remaining == 8 and cursor_type(buffer=bytearray(3)).remaining == 3
    assert cursor.put(b"\x01\x00\x00\x00")
    assert list(items) == [1, 0]


def test_cursor_advance_checks_its_argument(cursor_type: Any) -> None:
    cursor = cursor_type(bytearray(4))
    for bad in (-1, 5, sys.maxsize * 4):
        with pytest.raises(ValueError, match="4 bytes are due"):
            cursor.advance(bad)
    for wrong in ("1", 1.0, None):
        with pytest.raises(TypeError):
            cursor.advance(wrong)
    assert (cursor.offset, cursor.remaining) == (0, 4)
    assert cursor.advance(True) == 3  # an integer (operator.index)
    assert cursor.advance(0) == 3 and cursor.advance(3) == 0 and cursor.offset == 4


def test_a_released_cursor_holds_nothing_and_takes_nothing(cursor_type: Any) -> None:
    buffer = bytearray(b"." * 6)
    cursor = cursor_type(buffer)
    assert cursor.put(b"ab")
    with pytest.raises(BufferError):
        buffer.extend(b"x")  # its buffer is an export: the bytearray cannot move meanwhile
    cursor.release()
    buffer.extend(b"x")  # released: no export left
    assert cursor.put(b"") is False and cursor.put(b"c") is False
    assert (cursor.offset, cursor.remaining) == (2, 0)
    assert cursor.advance(0) == 0
    with pytest.raises(ValueError, match="0 bytes are due"):
        cursor.advance(1)
    cursor.release()  # again: nothing
    assert buffer == b"ab....x"


def test_a_cursor_on_a_gather_is_one_of_its_views(cursor_type: Any) -> None:
    gather = require_gather()(6)
    cursor = cursor_type(gather)
    assert gather.exports == 1
    assert cursor.put(b"abc")
    cursor.advance(3)  # written through another view, say
    del cursor  # dropped without release(): its export goes with it
    assert gather.exports == 0
    kept = cursor_type(gather)
    data = gather.take(None)  # an export left: a copy
    assert gather.copied and len(data) == 6
    kept.release()
    assert gather.exports == 0
