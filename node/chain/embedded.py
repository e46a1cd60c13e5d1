"""The embedded chain: an in-process EVM chain (py-evm via eth-tester) kept on disk.

eth-tester builds an in-memory chain from a fresh genesis every time. Here the chain
lives in a SQLite file (:class:`node.chain.chaindb.SQLiteDB`), is created from genesis
on the first start only and reopened at its head afterwards, and is committed after
every mined block. Each transaction is mined into its own block as soon as it is sent,
and block timestamps follow the wall clock, also across restarts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI
from eth.chains.base import MiningChain
from eth.constants import BLANK_ROOT_HASH, ZERO_ADDRESS
from eth.db.atomic import AtomicDB
from eth.exceptions import HeaderNotFound
from eth.exceptions import Revert as EVMRevert
from eth.exceptions import TransactionNotFound as EVMTransactionNotFound
from eth.vm.forks import PragueVM
from eth.vm.spoof import SpoofTransaction
from eth_abi import abi
from eth_abi.exceptions import DecodingError
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.main import EIP838_SIG
from eth_tester.backends.pyevm.serializers import (
    serialize_transaction,
    serialize_transaction_receipt,
)
from eth_tester.constants import DYNAMIC_FEE_TRANSACTION_PARAMS, ZERO_ADDRESS_HEX
from eth_tester.exceptions import TransactionFailed, TransactionNotFound
from eth_typing import Hash32
from eth_utils import encode_hex, is_address, to_canonical_address, to_checksum_address
from web3 import EthereumTesterProvider, Web3
from web3.types import RPCEndpoint, RPCResponse

from node.chain.chaindb import (
    SCHEMA_VERSION,
    ChainDBError,
    ChainDBLockedError,
    ChainDBMismatchError,
    SQLiteDB,
)

__all__ = ["ChainDBError", "ChainDBLockedError", "ChainDBMismatchError", "EmbeddedChain"]

logger = logging.getLogger(__name__)

# web3's EthereumTesterProvider answers eth_chainId with this constant, whatever the
# chain says, so the embedded chain must use the same id.
EMBEDDED_CHAIN_ID = 131277322940537

# Block tags that eth_call / eth_estimateGas run on top of the head, at ~now.
_HEAD_TAGS = ("latest", "pending")
# Mined receipts kept by the tester (see ``_EmbeddedEthereumTester.get_transaction_receipt``).
_RECEIPT_CACHE_SIZE = 16


class _EmbeddedMiningChain(MiningChain):
    """eth-tester's chain class, rebuilt here: eth-tester defines it inside a function
    that also creates an in-memory DB, so it cannot be reused on an existing DB."""

    chain_id = EMBEDDED_CHAIN_ID
    vm_configuration = ((0, PragueVM),)

    def create_header_from_parent(
        self, parent_header: BlockHeaderAPI, **header_params: Any
    ) -> BlockHeaderAPI:
        # Keep the gas limit constant (eth-tester does the same; py-evm would drift it).
        header_params["gas_limit"] = parent_header.gas_limit
        return super().create_header_from_parent(parent_header, **header_params)

    def get_transaction_builder(self) -> Any:
        # PyEVMBackend builds transactions through the chain; MiningChain lacks this.
        return self.get_vm().get_transaction_builder()


class _PersistentPyEVMBackend(PyEVMBackend):
    """PyEVMBackend over an existing chain and its SQLite DB.

    Differences from eth-tester's backend:
    - commits the DB once per mined block;
    - the block being built takes the wall-clock time when its first transaction
      arrives (eth-tester stamps it when the *previous* block was mined);
    - ``eth_call`` at "latest" runs in a block on top of the head stamped ~now (see
      ``call``), and calls/estimates naming no fee cost nothing, as on JSON-RPC nodes;
    - reverts of calls/estimates keep their raw data (see ``_Reverted``);
    - transactions are found through py-evm's hash index instead of scanning every
      block backwards (O(chain length) per receipt, and per log in get_logs).
    """

    def __init__(self, chain: _EmbeddedMiningChain, db: SQLiteDB) -> None:
        # PyEVMBackend.__init__ would build a fresh in-memory chain: not called.
        self.account_keys = ()  # no eth-tester test accounts: the node signs its txs
        self.chain = chain
        self._db = db

    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        """Not supported: it would silently swap in an in-memory chain."""
        raise NotImplementedError("the embedded chain is persistent; delete the file")

    # -- timestamps -------------------------------------------------------------
    def _refresh_pending_timestamp(self) -> None:
        """Give the block being built the current time, while it has no transactions.

        py-evm stamped it when its parent was mined, which may be hours ago; that stamp
        is already later than the parent's (py-evm rejects equal ones) and is kept when
        later than the clock (busy chain, or eth-tester's time_travel).
        """
        header = self.chain.header
        if header.transaction_root != BLANK_ROOT_HASH:
            return  # transactions already ran with this timestamp: it must not change
        now = int(time.time())
        if now > header.timestamp:
            self.chain.header = header.copy(timestamp=now)

    # -- writes -----------------------------------------------------------------
    def send_raw_transaction(self, raw_transaction: bytes) -> bytes:
        self._refresh_pending_timestamp()
        return super().send_raw_transaction(raw_transaction)

    def send_signed_transaction(
        self, signed_transaction: dict[str, Any], block_number: Any = "latest"
    ) -> bytes:
        self._refresh_pending_timestamp()
        return super().send_signed_transaction(signed_transaction, block_number)

    def send_transaction(self, transaction: dict[str, Any]) -> bytes:
        self._refresh_pending_timestamp()
        return super().send_transaction(transaction)

    def mine_blocks(self, num_blocks: int = 1, coinbase: bytes = ZERO_ADDRESS) -> tuple[bytes, ...]:
        block_hashes: list[bytes] = []
        for _ in range(num_blocks):
            self._refresh_pending_timestamp()
            block_hashes.extend(super().mine_blocks(1, coinbase))
            # The block and the state it commits to, in one SQLite transaction: only
            # after this does EthereumTester hand the tx hash (and receipt) back.
            self._db.commit()
        return tuple(block_hashes)

    # -- reads at the head ------------------------------------------------------
    # eth-tester runs eth_call in the context of the last mined block (so block.timestamp
    # is that block's, possibly hours old) and charges the caller for gas, at 1 gwei and
    # the whole block's gas unless told otherwise (so an address holding less than 0.03
    # ETH cannot even call a view). Like JSON-RPC nodes, run calls at "latest" in a block
    # on top of the head stamped ~now, free of charge unless the caller set a fee.
    # eth-tester's estimate_gas already uses such a block (py-evm's costless state).

    def call(self, transaction: dict[str, Any], block_number: Any = "latest") -> bytes:
        if block_number not in _HEAD_TAGS:
            return super().call(transaction, block_number)
        head = self.chain.get_canonical_head()
        transaction = _free_of_charge(transaction)
        if "gas" not in transaction:
            transaction = {**transaction, "gas": head.gas_limit}
        unsigned = self._get_normalized_and_unsigned_evm_transaction(transaction, "latest")
        spoofed = SpoofTransaction(unsigned, from_=transaction["from"])
        with self.chain.get_vm(head).in_costless_state() as state:
            computation = state.apply_transaction(spoofed)
        if not computation.is_error:
            return computation.output
        if isinstance(computation.error, EVMRevert):
            raise _Reverted(computation.output)
        raise TransactionFailed(str(computation.error))

    def estimate_gas(self, transaction: dict[str, Any], block_number: Any = "latest") -> int:
        if block_number in _HEAD_TAGS:
            transaction, block_number = _free_of_charge(transaction), "latest"
        try:
            return super().estimate_gas(transaction, block_number)
        except TransactionFailed as exc:  # eth-tester wraps py-evm's Revert in it
            cause = exc.args[0] if exc.args else None
            if isinstance(cause, EVMRevert):
                raise _Reverted(cause.args[0] if cause.args else b"") from exc
            raise

    # -- transaction lookups ------------------------------------------------------
    def _find_transaction(
        self, transaction_hash: bytes
    ) -> tuple[BlockAPI, SignedTransactionAPI, int, bool]:
        """(block, transaction, index in block, is pending) for a transaction hash."""
        try:
            number, index = self.chain.chaindb.get_transaction_index(Hash32(transaction_hash))
        except EVMTransactionNotFound:
            pending = self.chain.get_block()  # only non-empty with auto-mining off
            for index, transaction in enumerate(pending.transactions):
                if transaction.hash == transaction_hash:
                    return pending, transaction, index, True
            raise TransactionNotFound(
                f"No transaction found for transaction hash: {encode_hex(transaction_hash)}"
            ) from None
        block = self.chain.get_canonical_block_by_number(number)
        return block, block.transactions[index], index, False

    def get_transaction_by_hash(self, transaction_hash: bytes) -> dict[str, Any]:
        block, transaction, index, is_pending = self._find_transaction(transaction_hash)
        return serialize_transaction(block, transaction, index, is_pending)

    def get_transaction_receipt(self, transaction_hash: bytes) -> dict[str, Any]:
        block, transaction, index, is_pending = self._find_transaction(transaction_hash)
        receipts = block.get_receipts(self.chain.chaindb)
        return serialize_transaction_receipt(
            block, receipts, transaction, index, is_pending, self.chain.get_vm()
        )


class _Reverted(Exception):
    """eth_call / eth_estimateGas hit REVERT, with this revert data.

    eth-tester raises ``TransactionFailed`` with the data decoded as a string, or
    stringified (custom errors), and web3 passes it on as is; JSON-RPC nodes answer with
    an error carrying the raw data, which web3 turns into ContractCustomError,
    ContractLogicError or ContractPanicError. The provider below does the same.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.data = data


class _EmbeddedEthereumTester(EthereumTester):
    """EthereumTester accepting calls without a sender, as JSON-RPC nodes do.

    web3 fills a missing ``from`` with ``eth_accounts[0]``, and there are no eth-tester
    accounts here, so eth-tester would reject the call; use the zero address instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._receipts: OrderedDict[str, Any] = OrderedDict()

    def call(self, transaction: dict[str, Any], block_number: Any = "latest") -> Any:
        return super().call(_with_sender(transaction), block_number)

    def estimate_gas(self, transaction: dict[str, Any], block_number: Any = "latest") -> Any:
        return super().estimate_gas(_with_sender(transaction), block_number)

    def get_transaction_receipt(self, transaction_hash: Any) -> Any:
        """eth-tester's receipt, kept for the last few mined transactions: a sender waits
        for the receipt and its caller reads it again, and serialising, validating and
        normalising a 1,000-log receipt is ~80 ms each time. Mined blocks never change
        here (no reorgs), so a kept receipt stays right."""
        cache = self._receipts
        key = str(transaction_hash).lower()
        receipt = cache.get(key)
        if receipt is None:
            receipt = super().get_transaction_receipt(transaction_hash)
            if receipt.get("block_number") is None:
                return receipt  # pending: not final yet
            cache[key] = receipt
            while len(cache) > _RECEIPT_CACHE_SIZE:
                cache.popitem(last=False)
        return receipt


def _free_of_charge(transaction: dict[str, Any]) -> dict[str, Any]:
    """Zero fees for a call/estimate that names none (eth-tester defaults to 1 gwei)."""
    if any(key in transaction for key in ("gas_price", *DYNAMIC_FEE_TRANSACTION_PARAMS)):
        return transaction
    return {**transaction, "max_fee_per_gas": 0, "max_priority_fee_per_gas": 0}


def _with_sender(transaction: dict[str, Any]) -> dict[str, Any]:
    if transaction.get("from") is None:
        return {**transaction, "from": ZERO_ADDRESS_HEX}
    return transaction


class _SerializedEthereumTesterProvider(EthereumTesterProvider):
    """EthereumTesterProvider serving one request at a time, reporting reverts as
    JSON-RPC nodes do.

    py-evm's chain object and the DB buffer are not thread-safe, and the node calls
    web3 from several threads (e.g. FastAPI's thread pool).
    """

    def __init__(self, ethereum_tester: EthereumTester) -> None:
        super().__init__(ethereum_tester)
        self._lock = threading.RLock()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self._lock:
            try:
                return super().make_request(method, params)
            except _Reverted as reverted:
                response_id = repr(self._current_request_id)
                self._current_request_id += 1
                return _revert_response(response_id, reverted.data)


def _revert_response(response_id: str, data: bytes) -> RPCResponse:
    """The error geth returns for a reverted call (code 3, revert data in ``data``)."""
    message = "execution reverted"
    if data[:4] == EIP838_SIG:  # Error(string)
        with contextlib.suppress(DecodingError):
            message += f": {abi.decode(['string'], data[4:])[0]}"
    error = {"code": 3, "message": message, "data": encode_hex(data)}
    return cast(RPCResponse, {"jsonrpc": "2.0", "id": response_id, "error": error})


class EmbeddedChain:
    """An in-process EVM chain (py-evm via eth-tester) persisted in a SQLite file.

    Every transaction sent through :attr:`web3` is mined into its own block at once,
    and that block is committed to the file before the call returns: a receipt that
    was handed out survives a crash. Block timestamps follow the wall clock (strictly
    increasing, so more than one tx per second makes chain time run ahead of it until
    the load drops).
    """

    def __init__(self, path: Path, *, funded_accounts: Mapping[str, int]) -> None:
        """Open the chain stored at ``path``, creating it on the first start.

        :param path: the SQLite file (its directory must exist).
        :param funded_accounts: address -> balance in wei, allocated in the genesis
            block. Used only when the file is created; later starts reopen the chain
            at its head (a different allocation is logged, not applied).
        :raises ChainDBMismatchError: the file holds another chain or is no chain DB.
        :raises node.chain.chaindb.ChainDBLockedError: the file is already open.
        """
        alloc = _normalize_alloc(funded_accounts)
        self._path = Path(path)
        self._db = SQLiteDB(self._path)
        try:
            base_db = AtomicDB(wrapped_db=self._db)
            if self._db.is_empty():
                chain = self._create(base_db, alloc)
            else:
                chain = self._reopen(base_db, alloc)
        except BaseException:
            self._db.close()
            raise
        self._chain = chain
        backend = _PersistentPyEVMBackend(chain, self._db)
        self._tester = _EmbeddedEthereumTester(backend=backend, auto_mine_transactions=True)
        self._web3 = Web3(_SerializedEthereumTesterProvider(self._tester))

    @property
    def web3(self) -> Web3:
        """A Web3 over an EthereumTesterProvider bound to this chain."""
        return self._web3

    @property
    def chain_id(self) -> int:
        """The chain id (EIP-155), also what ``eth_chainId`` returns."""
        return self._chain.chain_id

    @property
    def path(self) -> Path:
        """The SQLite file holding the chain."""
        return self._path

    def close(self) -> None:
        """Flush and close the DB; idempotent. The chain is unusable afterwards.

        Dropping the object does not close the file: py-evm's and web3's class-level
        caches keep it reachable, and with it the file lock, until the process exits.
        """
        if not self._db.closed:
            # Normally empty: only leftovers of requests that failed midway, which
            # the committed blocks do not reference.
            self._db.commit()
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- opening ----------------------------------------------------------------
    def _create(self, base_db: AtomicDB, alloc: dict[str, int]) -> _EmbeddedMiningChain:
        """Write the genesis block, and the metadata identifying it, in one commit."""
        genesis_state = {
            to_canonical_address(address): {
                "balance": balance,
                "nonce": 0,
                "code": b"",
                "storage": {},
            }
            for address, balance in alloc.items()
        }
        # eth-tester's genesis parameters: post-merge, ~30M gas, timestamp now.
        genesis_params = PyEVMBackend.generate_genesis_params()
        chain = _EmbeddedMiningChain.from_genesis(base_db, genesis_params, genesis_state)
        genesis = chain.get_canonical_block_header_by_number(0)
        self._db.commit(
            meta={
                "schema_version": str(SCHEMA_VERSION).encode(),
                "chain_id": str(chain.chain_id).encode(),
                "genesis_hash": genesis.hash,
                "genesis_alloc": json.dumps(alloc, sort_keys=True).encode(),
            }
        )
        logger.info("created embedded chain %s, genesis %s", self._path, genesis.hash.hex())
        return chain

    def _reopen(self, base_db: AtomicDB, alloc: dict[str, int]) -> _EmbeddedMiningChain:
        """Check the stored chain is the one requested and open it at its head."""
        meta = {
            name: self._db.get_meta(name)
            for name in ("schema_version", "chain_id", "genesis_hash", "genesis_alloc")
        }
        if meta["genesis_hash"] is None:
            raise ChainDBMismatchError(f"{self._path} is not an embedded chain DB")
        if meta["schema_version"] != str(SCHEMA_VERSION).encode():
            raise ChainDBMismatchError(
                f"{self._path} has chain DB schema {meta['schema_version']!r}, "
                f"this node reads schema {SCHEMA_VERSION}"
            )
        if meta["chain_id"] != str(EMBEDDED_CHAIN_ID).encode():
            raise ChainDBMismatchError(
                f"{self._path} holds chain id {meta['chain_id']!r}, expected {EMBEDDED_CHAIN_ID}"
            )
        chain = _EmbeddedMiningChain(base_db)
        try:
            genesis_hash = chain.chaindb.get_canonical_block_hash(0)
        except HeaderNotFound:
            genesis_hash = None
        if genesis_hash != meta["genesis_hash"]:
            raise ChainDBMismatchError(
                f"{self._path}: the chain's genesis block {_hex(genesis_hash)} is not the "
                f"one recorded when the file was created ({_hex(meta['genesis_hash'])})"
            )
        stored_alloc = json.loads(meta["genesis_alloc"] or b"{}")
        if alloc and alloc != stored_alloc:
            # Not an error: funded_accounts only seed a new chain. But a node whose key
            # changed will find its account unfunded, which deserves a trace.
            logger.warning(
                "%s was created with genesis allocation %s; ignoring %s",
                self._path,
                stored_alloc,
                alloc,
            )
        head = chain.get_canonical_head()
        logger.info("reopened embedded chain %s at block %d", self._path, head.block_number)
        return chain


def _normalize_alloc(funded_accounts: Mapping[str, int]) -> dict[str, int]:
    """Checksummed address -> balance, validated."""
    alloc: dict[str, int] = {}
    for address, balance in funded_accounts.items():
        if not is_address(address):
            raise ValueError(f"not an address: {address!r}")
        if not isinstance(balance, int) or balance < 0:
            raise ValueError(f"balance of {address} must be a non-negative int (wei)")
        alloc[to_checksum_address(address)] = balance
    return alloc


def _hex(value: bytes | None) -> str:
    return "none" if value is None else "0x" + value.hex()
