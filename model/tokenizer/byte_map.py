"""The two fixed ingredients of GPT-2's byte-level BPE: the byte map and the split pattern.

Every other tokenizer module imports them from here, so "GPT-2's rules" live in one place.
"""

from __future__ import annotations

from functools import cache

# How GPT-2 cuts text into "words" before any merging happens. BPE never merges across
# these boundaries, so e.g. " dog" and "." always end up in different tokens.
#   's 't 're 've 'm 'll 'd   English contractions become their own pieces
#    ?\p{L}+                  a run of letters, with at most one leading space
#    ?\p{N}+                  a run of digits, with at most one leading space
#    ?[^\s\p{L}\p{N}]+        a run of punctuation/symbols, with at most one leading space
#   \s+(?!\S)                 whitespace, but leave the last space for the next word
#   \s+                       any remaining whitespace
# `\p{L}` (any letter, in any script) needs the third-party `regex` package, not `re`.
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)

# The one special token GPT-2 has: it separates documents during training.
END_OF_TEXT = "<|endoftext|>"


@cache
def bytes_to_unicode() -> dict[int, str]:
    """Map each of the 256 byte values to one printable unicode character.

    Why: BPE works on bytes, so any text (any script, any emoji) can be tokenized without
    an "unknown" token. But the vocabulary and merge files are *text* files: a merge is
    written as "a b" on one line. Raw bytes such as 0x20 (space), 0x0A (newline) or 0x00
    would break that format or be invisible. So GPT-2 gives every byte a visible stand-in:

    * bytes that are already printable characters keep their own character ("a" -> "a");
    * the other 68 bytes (control characters, space, 0x7F-0xA0, 0xAD) are moved to
      characters 256, 257, ... in order: space (0x20) becomes "Ġ", newline "Ċ", tab "ĉ".

    That is why GPT-2's vocabulary shows tokens like "Ġthe" (" the"). The dict's order is
    meaningful: GPT-2 gives the 256 single-byte tokens the ids 0..255 in exactly this
    order (printable bytes first), so `list(bytes_to_unicode())[i]` is the byte of id i.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    byte_values = list(printable)
    chars = [chr(b) for b in printable]
    shifted = 0
    for b in range(256):
        if b not in printable:
            byte_values.append(b)
            chars.append(chr(256 + shifted))
            shifted += 1
    return dict(zip(byte_values, chars, strict=True))


@cache
def unicode_to_bytes() -> dict[str, int]:
    """The inverse of `bytes_to_unicode`: stand-in character -> byte value."""
    return {char: byte for byte, char in bytes_to_unicode().items()}


def token_text_to_bytes(token: str) -> bytes:
    """Turn a token as written in the vocabulary files ("Ġthe") into its bytes (b" the").

    Raises KeyError if the text holds a character that is not one of the 256 stand-ins
    (special tokens such as "<|endoftext|>" happen to be made of stand-ins too).
    """
    table = unicode_to_bytes()
    return bytes(table[char] for char in token)


def bytes_to_token_text(data: bytes) -> str:
    """Turn raw bytes into the printable form used in the vocabulary files."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in data)


def visible(piece: bytes) -> str:
    """A token's bytes as text a person can read: spaces, newlines and tabs made visible
    (␣ ⏎ ⇥), a character cut in the middle shown as U+FFFD."""
    text = piece.decode("utf-8", errors="replace")
    return text.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥")
