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


class ModuleLoadError(HSMError):
    """The PKCS#11 module (shared library) is missing or cannot be loaded."""


class TokenNotFound(HSMError):
    """No PKCS#11 token carries the configured label."""


class WrongPin(KeyStoreLocked):
    """The token refused the PIN (wrong, wrong length or locked). Never quotes the PIN."""
