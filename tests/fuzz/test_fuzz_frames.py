"""Fuzz the frame reader through Protocol.receive_data, on both sides (see fuzz_targets.py)."""

from __future__ import annotations

from fuzz_strategies import FUZZ, chunk_sizes, frame_streams
from fuzz_targets import check_frames, check_frames_gathered
from hypothesis import given
from hypothesis import strategies as st

from wskit import Side

_LIMITS = st.sampled_from([2**20, 2**20, 100, 0, None])


@FUZZ
@given(frame_streams(masked=True), chunk_sizes, _LIMITS, st.sampled_from([None, None, 2, 5]))
def test_fuzz_frames_server_side(data: bytes, sizes: list[int], max_size: int | None,
                                 max_frames: int | None) -> None:
    check_frames(data, sizes, Side.SERVER, max_size, max_frames)


@FUZZ
@given(frame_streams(masked=False), chunk_sizes, _LIMITS, st.sampled_from([None, None, 2, 5]))
def test_fuzz_frames_client_side(data: bytes, sizes: list[int], max_size: int | None,
                                 max_frames: int | None) -> None:
    check_frames(data, sizes, Side.CLIENT, max_size, max_frames)


@FUZZ
@given(frame_streams(masked=True), chunk_sizes, _LIMITS)
def test_fuzz_frames_gathered_server_side(data: bytes, sizes: list[int], max_size: int | None) -> None:
    check_frames_gathered(data, sizes, Side.SERVER, max_size)


@FUZZ
@given(frame_streams(masked=False), chunk_sizes, _LIMITS)
def test_fuzz_frames_gathered_client_side(data: bytes, sizes: list[int], max_size: int | None) -> None:
    check_frames_gathered(data, sizes, Side.CLIENT, max_size)
