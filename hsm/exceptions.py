"""Errors raised by key stores. Messages never carry key material."""


class HSMError(Exception):
    """Root of every key-management error."""


class KeyStoreLocked(HSMError):
    """The key store could not be opened: wrong passphrase or PIN."""


class KeyNotFound(HSMError):
    """No key with the requested label or version exists."""


class UnwrapError(HSMError):
    """A wrapped data key could not be unwrapped (wrong KEK or corrupted)."""


class DecryptionError(HSMError):
    """Ciphertext failed authentication (tampered, wrong key or wrong context)."""
