"""Random passphrases for ``secret_generate`` and the agent's drivers.

A passphrase is printable ASCII (letters and digits), so it can be typed
into ``cryptsetup`` or a CHAP configuration as it is; drawn with the
:mod:`secrets` module, each character carries log2(62), about 5.95 bits.
"""

from __future__ import annotations

import secrets
import string

#: Shortest passphrase generated: 16 characters, about 95 bits.
MIN_LENGTH = 16
#: Longest passphrase generated.
MAX_LENGTH = 1024
#: Length when the caller names none: about 190 bits.
DEFAULT_LENGTH = 32

_ALPHABET = string.ascii_letters + string.digits


def generate(length: int = DEFAULT_LENGTH) -> bytes:
    """Return a random passphrase of ``length`` characters, as ASCII bytes.

    :raises ValueError: when ``length`` is outside MIN_LENGTH..MAX_LENGTH.
    """
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError("a passphrase length must be within %d..%d" % (MIN_LENGTH, MAX_LENGTH))
    return "".join(secrets.choice(_ALPHABET) for _ in range(length)).encode("ascii")
