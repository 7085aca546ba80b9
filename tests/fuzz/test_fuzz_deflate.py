"""Fuzz permessage-deflate decoding on a server that negotiated it (see fuzz_targets.py)."""

from __future__ import annotations

from fuzz_strategies import FUZZ, chunk_sizes, deflate_streams
from fuzz_targets import check_deflate
from hypothesis import given
from hypothesis import strategies as st


@FUZZ
@given(deflate_streams, chunk_sizes, st.sampled_from([2**20, 2**20, 1000, 0, None]), st.booleans(),
       st.sampled_from([None, 9, 12]))
def test_fuzz_deflate_decoding(data: bytes, sizes: list[int], max_size: int | None, no_context_takeover: bool,
                               window_bits: int | None) -> None:
    check_deflate(data, sizes, max_size, no_context_takeover, window_bits)
