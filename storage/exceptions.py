"""Errors raised by storage backends. Backends wrap driver errors with ``raise ... from``."""


class StorageError(Exception):
    """Root of every storage error."""


class BlobNotFound(StorageError):
    """No blob is stored under the requested CID."""


class IntegrityError(StorageError):
    """Stored bytes do not match their content address or recorded hash."""


class RecordNotFound(StorageError):
    """The index holds no record with the requested id."""


class DuplicateRecord(StorageError):
    """A record with that id is already indexed."""


class DuplicateIdentifier(DuplicateRecord):
    """A record with that document identifier (``DocumentMeta.identifier``) is indexed."""


class BackendUnavailable(StorageError):
    """The backend cannot be reached (server down, disk gone)."""


class ConstraintViolation(StorageError):
    """A write broke a constraint of a SQL database: a duplicate key, a missing value or a
    guard (the key audit log refuses edits)."""


class CredentialsRefused(StorageError):
    """The backend refused the configured credentials or permissions (a configuration
    error, not an outage)."""


class LeaseLost(StorageError):
    """A write made under a lease fence that is no longer current (another holder took the
    lease since) or, before a send, a lease that has expired: the caller must stop."""
