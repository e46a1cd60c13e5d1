"""Fixtures of the zk test suite: the zk.testing plugin's session-cached keys and provers
(imported, since ``pytest_plugins`` is only honoured in the root conftest)."""

from zk.testing import prover, zk_artifacts_dir, zk_keys, zk_prover  # noqa: F401
