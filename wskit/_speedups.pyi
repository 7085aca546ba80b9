"""Type stubs for the optional C accelerator ``wskit._speedups``."""

def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``mask`` (RFC 6455 §5.3).

    Args:
        data: the payload, any bytes-like object.
        mask: the 4-byte masking key.

    Returns:
        The masked (or unmasked: the operation is its own inverse) bytes.

    Raises:
        TypeError: ``data`` or ``mask`` is not a bytes-like object.
        ValueError: ``mask`` is not exactly 4 bytes long.
    """


def mask_frame(header: bytes | bytearray | memoryview, data: bytes | bytearray | memoryview,
               mask: bytes | bytearray | memoryview) -> bytes:
    """Return ``header + mask + apply_mask(data, mask)`` in one allocation."""
