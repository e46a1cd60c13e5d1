"""``TransactionSenderAPI`` implementations: who signs and sends the hospital's transactions.

``LocalTransactionSender`` owns the account's nonces in this process: every send goes
through one lock with a locally tracked nonce, which avoids nonce races between the
anchorer, the access-log flusher and API requests. Exactly one process per hospital (the
worker, or a single all-in-one node) may run one. ``RemoteTransactionSender`` is what API
processes use instead: it asks the worker to send (``POST <worker>/send``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import requests
from eth_account.signers.base import BaseAccount
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3._utils.transactions import fill_transaction_defaults
from web3.exceptions import TimeExhausted, TransactionNotFound, Web3Exception
from web3.types import TxParams

from hsm.abc import SignerAPI
from hsm.account import SignerAccount
from node.chain.abc import TransactionSenderAPI
from node.chain.exceptions import ChainError, ChainUnavailable, ContractReverted
from node.chain.reverts import as_reverted
from node.chain.worker_rpc import worker_session

__all__ = [
    "LocalTransactionSender",
    "RemoteTransactionSender",
    "decode_error_args",
    "encode_error_args",
]

log = logging.getLogger(__name__)

RECEIPT_TIMEOUT = 120.0  # seconds a sent transaction may take to be mined


class LocalTransactionSender(TransactionSenderAPI):
    """Signs with ``account`` (a ``SignerAccount`` over the hospital's key) and sends
    through ``w3``, one transaction at a time."""

    def __init__(
        self, w3: Web3, account: BaseAccount, *, receipt_timeout: float = RECEIPT_TIMEOUT
    ) -> None:
        self._w3 = w3
        self._account = account
        self._receipt_timeout = receipt_timeout
        self._lock = threading.RLock()
        self._nonce: int | None = None

    @property
    def address(self) -> str:
        return self._account.address

    @property
    def account(self) -> BaseAccount:
        """The account that signs (changes on ``switch_signer``)."""
        return self._account

    @property
    def lock(self) -> threading.RLock:
        """Held during every send: hold it to send with the account outside this class
        (then call ``reset_nonce``)."""
        return self._lock

    def exclusive(self) -> threading.RLock:
        return self._lock

    def reset_nonce(self) -> None:
        """Re-read the account's nonce from the chain before the next send."""
        with self._lock:
            self._nonce = None

    def send(self, to: str, data: bytes, gas: int) -> bytes:
        with self._lock:
            sender = self._account.address
            try:
                if self._nonce is None:
                    self._nonce = self._w3.eth.get_transaction_count(sender, "pending")
                tx = fill_transaction_defaults(
                    self._w3,
                    cast(
                        TxParams,
                        {
                            "from": sender,
                            "to": to_checksum_address(to),
                            "data": HexBytes(data),
                            "gas": gas,
                            "nonce": self._nonce,
                            "value": 0,
                        },
                    ),
                )
                signed = self._account.sign_transaction(tx)  # type: ignore[arg-type]
                tx_hash = self._w3.eth.send_raw_transaction(signed.raw_transaction)
                self._nonce += 1
                receipt = self._w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=self._receipt_timeout
                )
            except (ConnectionError, OSError) as err:
                self._nonce = None
                raise ChainUnavailable("the chain node cannot be reached") from err
            except TimeExhausted as err:
                # Sent but not mined in time (e.g. QBFT lost quorum): re-read the nonce next.
                self._nonce = None
                raise ChainUnavailable("the transaction was not mined in time") from err
            except Exception as err:
                reverted = as_reverted(err)
                if reverted is not None:  # refused before it was sent
                    raise reverted from err
                self._nonce = None
                if isinstance(err, Web3Exception):
                    raise ChainError(f"transaction failed: {type(err).__name__}") from err
                raise
            if receipt["status"] != 1:
                raise ContractReverted("Reverted", ())
            return bytes(tx_hash)

    def switch_signer(self, signer: SignerAPI, *, move_funds: bool = True) -> None:
        """Send from ``signer``'s account from now on (waits for any send in progress; the
        nonce is re-read). ``move_funds`` first transfers the old account's balance, less
        the transfer's fee, to the new one (a zero-gas-price network needs none)."""
        account = SignerAccount(signer)
        with self._lock:  # no send of the old account is in flight past this point
            old = self._account.address
            if account.address == old:
                return
            if move_funds:
                self._move_funds(account.address)
            self._account = account
            self._nonce = None
        log.info("transactions now sent as %s (was %s)", account.address, old)

    def _move_funds(self, to: str) -> None:
        sender = self._account.address
        eth = self._w3.eth
        try:
            gas_price = int(eth.gas_price)
            value = int(eth.get_balance(sender)) - 21_000 * gas_price
            if value <= 0:
                return
            tx = {
                "to": to,
                "value": value,
                "gas": 21_000,
                "gasPrice": gas_price,
                "nonce": eth.get_transaction_count(sender, "pending"),
                "chainId": int(eth.chain_id),
            }
            signed = self._account.sign_transaction(tx)  # type: ignore[arg-type]
            tx_hash = eth.send_raw_transaction(signed.raw_transaction)
            eth.wait_for_transaction_receipt(tx_hash, timeout=self._receipt_timeout)
        except (ConnectionError, OSError) as err:
            raise ChainUnavailable("the chain node cannot be reached") from err
        except TimeExhausted as err:
            raise ChainUnavailable("the transfer was not mined in time") from err


class RemoteTransactionSender(TransactionSenderAPI):
    """Asks the worker to send: ``POST <url_of()>/send`` with the bearer ``secret``.

    ``url_of`` is called for every request (the worker may move when its lease changes
    hands). With ``w3`` (this process's read connection), ``send`` also waits until the
    receipt is readable through it, so the caller's ``get_transaction_receipt`` finds it
    even when reads go to another chain node than the worker's.

    Errors: the worker unreachable, answering 503 or not answering within ``timeout`` ->
    ``ChainUnavailable``; the contract refusing -> ``ContractReverted``; any other refusal
    (wrong secret included) -> ``ChainError``.
    """

    def __init__(
        self,
        url_of: Callable[[], str],
        secret: bytes,
        w3: Web3 | None = None,
        *,
        timeout: float = RECEIPT_TIMEOUT + 30.0,
        address_ttl: float = 5.0,
    ) -> None:
        self._url_of = url_of
        self._w3 = w3
        self._timeout = timeout
        self._address_ttl = address_ttl
        self._session = worker_session(secret)
        self._address: str | None = None
        self._address_at = 0.0

    @property
    def address(self) -> str:
        """The worker's sending address, from its ``GET /status`` (cached ``address_ttl``
        seconds; a stale value is kept while the worker cannot be reached)."""
        now = time.monotonic()
        if self._address is None or now - self._address_at > self._address_ttl:
            try:
                status = self._request("GET", "/status", None, timeout=10.0)
                self._address = to_checksum_address(status["address"])
                self._address_at = now
            except ChainUnavailable:
                if self._address is None:
                    raise
        return self._address

    def send(self, to: str, data: bytes, gas: int) -> bytes:
        body = {"to": to_checksum_address(to), "data": "0x" + bytes(data).hex(), "gas": int(gas)}
        answer = self._request("POST", "/send", body, timeout=self._timeout)
        tx_hash = bytes(HexBytes(answer["tx_hash"]))
        if answer.get("from"):
            self._address = to_checksum_address(answer["from"])
            self._address_at = time.monotonic()
        if self._w3 is not None:
            self._await_visible(tx_hash)
        return tx_hash

    def close(self) -> None:
        self._session.close()

    def _await_visible(self, tx_hash: bytes) -> None:
        try:
            self._w3.eth.wait_for_transaction_receipt(  # type: ignore[union-attr]
                HexBytes(tx_hash), timeout=30.0, poll_latency=0.05
            )
        except (ConnectionError, OSError) as err:
            raise ChainUnavailable("the chain node cannot be reached") from err
        except (TimeExhausted, TransactionNotFound) as err:
            raise ChainUnavailable(
                "the worker's transaction is mined but not readable from this process"
            ) from err

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, *, timeout: float
    ) -> dict[str, Any]:
        url = self._url_of().rstrip("/") + path
        try:
            response = self._session.request(method, url, json=body, timeout=(5.0, timeout))
        except requests.Timeout as err:
            raise ChainUnavailable("the worker did not answer in time") from err
        except (requests.ConnectionError, OSError) as err:
            raise ChainUnavailable("the worker cannot be reached") from err
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if response.status_code == 200:
            return answer
        error = answer.get("error")
        message = str(answer.get("message") or f"the worker answered HTTP {response.status_code}")
        if response.status_code == 503 or error == "ChainUnavailable":
            raise ChainUnavailable(message)
        if error == "ContractReverted":
            raise ContractReverted(
                str(answer.get("name") or "Reverted"), decode_error_args(answer.get("args") or [])
            )
        if response.status_code == 401:
            raise ChainError("the worker refused this process's secret")
        raise ChainError(message)


# -- revert arguments over JSON ---------------------------------------------------------
def encode_error_args(args: Any) -> Any:
    """A custom error's decoded arguments as JSON: bytes become {"bytes": "0x.."}."""
    if isinstance(args, bytes | bytearray):
        return {"bytes": "0x" + bytes(args).hex()}
    if isinstance(args, list | tuple):
        return [encode_error_args(a) for a in args]
    if args is None or isinstance(args, bool | int | str):
        return args
    return str(args)


def decode_error_args(args: Any) -> tuple[Any, ...]:
    """The inverse of ``encode_error_args`` (sequences come back as tuples)."""

    def decode(value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("bytes"), str):
            return bytes(HexBytes(value["bytes"]))
        if isinstance(value, list):
            return tuple(decode(v) for v in value)
        return value

    return tuple(decode(a) for a in args) if isinstance(args, list) else ()
