from collections.abc import Sequence

def first_unconfirmed(entries: Sequence[bytes], start: int = 0, /) -> int:
    """The index of the first of ``entries``, from ``start`` on, not confirmed canonical;
    ``len(entries)`` when every one is."""

def canonicalize(value: object, max_depth: int, /) -> bytes | None:
    """The RFC 8785 bytes of ``value``, or None when the Python code must write (or
    refuse) it."""

def whole(text: bytes, value: object, max_depth: int, /) -> bool:
    """True when ``value``, parsed from the JSON ``text``, holds every member of the text's
    objects (no key repeated), no float, nothing nested past ``max_depth``; False says
    nothing."""
