"""External-chain mode: the node talks JSON-RPC to an EVM node it does not run.

In a consortium that node is the hospital's own Besu / GoQuorum validator or RPC node of a
QBFT network; in development it is ``scripts/chain.sh start`` (``npx hardhat node``).
``Web3ChainClient`` works unchanged over the ``Web3`` that :func:`connect_rpc` returns.

The contracts are deployed once per network, by one founding hospital, and described by a
manifest that every hospital's node loads: ``contracts/deployments/<network>.json``
(``Deployment.to_json`` plus a ``"network"`` name). :func:`ensure_deployment` deploys and
writes it when it is missing, and otherwise checks it against the chain, so that a node
never talks to contracts that are not the ones it was built for.

Command line (the ``emr-node chain deploy`` command wraps the same functions)::

    EMR_DEPLOYER_KEY=0x... python -m node.chain.external deploy \\
        --rpc-url http://127.0.0.1:8545 --network localhost --name "General Hospital"
    python -m node.chain.external check --rpc-url http://127.0.0.1:8545 --network localhost
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from eth_account.signers.base import BaseAccount
from eth_utils import is_address, to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import Web3Exception, Web3RPCError
from web3.middleware import ExtraDataToPOAMiddleware, SignAndSendRawMiddlewareBuilder
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import RPCEndpoint

from node.chain.artifacts import DEPLOYED_CONTRACTS, load_artifact
from node.chain.deploy import Deployment, artifact_hash, deploy_contracts
from node.chain.exceptions import ChainError, ChainUnavailable, DeploymentFailed

__all__ = [
    "DEPLOYMENTS_DIR",
    "DeploymentMismatch",
    "check_deployment",
    "connect_rpc",
    "ensure_deployment",
    "fund_account",
    "manifest_path",
    "read_manifest",
    "write_manifest",
]

log = logging.getLogger(__name__)

#: Where a source checkout keeps the per-network manifests. An installed node (no
#: checkout) is given its manifest's path instead.
DEPLOYMENTS_DIR = Path(__file__).resolve().parents[2] / "contracts" / "deployments"

_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Retried when the connection fails (refused, reset, connect timeout): a node restarting, or
# an idle keep-alive connection it closed. Read-only methods only: a retried
# eth_sendRawTransaction whose first attempt did reach the node fails with "already known"
# / "nonce too low" although the transaction is in, so sends are never retried here; the
# client resets its nonce and the caller's worker retries later.
READ_RETRIED_METHODS = (
    "eth_chainId",
    "net_version",
    "eth_blockNumber",
    "eth_getBalance",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_getTransactionCount",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "eth_call",
    "eth_estimateGas",
    "eth_getLogs",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_feeHistory",
)


class DeploymentMismatch(ChainError):
    """A deployment manifest does not describe contracts this node can use on this chain.

    ``problems`` lists each difference found (wrong chain id, missing code, different
    artifacts...).
    """

    def __init__(self, manifest: str | os.PathLike[str], problems: Sequence[str]) -> None:
        self.manifest = Path(manifest)
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(
            f"deployment manifest {self.manifest} does not match the chain: "
            + "; ".join(self.problems)
            + ". Redeploy or update the node."
        )


# -- connecting ------------------------------------------------------------------------
def connect_rpc(url: str, *, timeout: float = 10, headers: Mapping[str, str] | None = None) -> Web3:
    """A ``Web3`` over HTTP JSON-RPC at ``url``, checked to answer ``eth_chainId``.

    Each request times out after ``timeout`` seconds; ``eth_chainId`` is asked once and
    cached. Read-only requests are retried twice (0.1 s, 0.2 s apart) when the connection
    fails, sends never (see ``READ_RETRIED_METHODS``). ``headers`` are added to every request
    (e.g. ``Authorization: Bearer <JWT>`` for a Besu node with RPC authentication). The
    proof-of-authority middleware is installed because QBFT / IBFT / Clique blocks carry
    more than the 32 bytes of ``extraData`` web3 accepts by default; it is harmless on
    other chains.

    Raises ``ChainUnavailable`` when nothing answers at ``url`` or the answer is not a
    chain id. Messages show the URL without credentials.
    """
    request_kwargs: dict[str, Any] = {"timeout": timeout}
    if headers:
        request_kwargs["headers"] = {**HTTPProvider.get_request_headers(), **headers}
    shown = _redact(url)
    provider = HTTPProvider(
        url,
        request_kwargs=request_kwargs,
        # A node's chain id never changes, and web3 asks for it up to three times per
        # transaction (validation, building): cache it, a third of a send's round trips.
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
        # None: no block-finality check for cached answers (none depends on a block), and
        # no extra eth_chainId that web3 would send to pick a threshold.
        request_cache_validation_threshold=None,
        exception_retry_configuration=ExceptionRetryConfiguration(
            # requests.ConnectionError includes ConnectTimeout; a read timeout is not
            # retried: the node is slow, not gone, and repeating would only add load.
            errors=(requests.ConnectionError,),
            retries=3,
            backoff_factor=0.1,
            method_allowlist=list(READ_RETRIED_METHODS),
        ),
    )
    w3 = Web3(provider)
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, name="proof_of_authority", layer=0)
    try:
        chain_id = w3.eth.chain_id
    except OSError as err:  # requests' errors (refused, timeout, HTTP 4xx/5xx) are OSErrors
        raise ChainUnavailable(
            f"no EVM JSON-RPC node answers at {shown} ({type(err).__name__}); "
            "is it running (scripts/chain.sh start for a development chain)?"
        ) from err
    except (Web3Exception, ValueError, TypeError) as err:  # not JSON, or an RPC error
        raise ChainUnavailable(
            f"{shown} does not answer eth_chainId like an EVM JSON-RPC node ({type(err).__name__})"
        ) from err
    if not isinstance(chain_id, int) or chain_id <= 0:
        raise ChainUnavailable(f"{shown} answered eth_chainId with no usable chain id")
    return w3


def fund_account(w3: Web3, address: str, wei: int) -> None:
    """Set ``address``'s balance to exactly ``wei`` (not add to it). DEVELOPMENT CHAINS ONLY.

    Uses ``hardhat_setBalance``, which Hardhat and Anvil implement; a production node
    (Besu, GoQuorum, geth) refuses it, and this raises ``ChainError``. Real networks fund
    accounts in genesis or by transfer, or run with a zero gas price.
    """
    if wei < 0:
        raise ValueError("a balance cannot be negative")
    if not is_address(address):
        raise ValueError(f"not an address: {address!r}")
    try:
        w3.manager.request_blocking(
            RPCEndpoint("hardhat_setBalance"), [to_checksum_address(address), hex(wei)]
        )
    except OSError as err:
        raise ChainUnavailable("the chain node cannot be reached") from err
    except Web3RPCError as err:
        raise ChainError(
            "fund_account only works on development chains (Hardhat, Anvil): "
            f"the node refused hardhat_setBalance ({_rpc_message(err)})"
        ) from err


# -- manifests ---------------------------------------------------------------------------
def manifest_path(network: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """``<directory>/<network>.json`` (default directory: ``DEPLOYMENTS_DIR``).

    ``network`` is a short name (letters, digits, ``.``, ``_``, ``-``): it becomes a file
    name, so anything that could leave the directory is refused with ``ValueError``.
    """
    if not _NETWORK.match(network):
        raise ValueError(f"invalid network name {network!r}: use letters, digits, . _ -")
    return Path(DEPLOYMENTS_DIR if directory is None else directory) / f"{network}.json"


def read_manifest(path: str | os.PathLike[str]) -> Deployment:
    """Load a manifest. Extra keys (``network``) are ignored, so ``Deployment.save`` output
    loads too. Raises ``ChainError`` when it is missing or malformed."""
    try:
        return Deployment.load(path)
    except FileNotFoundError as err:
        raise ChainError(f"no deployment manifest at {path}") from err
    except OSError as err:
        raise ChainError(f"cannot read deployment manifest {path} ({err.strerror})") from err
    except ChainError as err:
        raise ChainError(f"{path}: {err}") from err


def write_manifest(
    path: str | os.PathLike[str],
    deployment: Deployment,
    network: str,
    *,
    overwrite: bool = False,
) -> None:
    """Write ``deployment`` with its ``network`` name to ``path``, atomically.

    Without ``overwrite`` an existing file is never replaced (``FileExistsError``): two
    operators deploying at once must not silently swap the network's contracts.
    """
    target = Path(path)
    data: dict[str, Any] = json.loads(deployment.to_json())
    data["network"] = network
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".json", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the manifest is public and shared
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # atomic create-if-absent, unlike os.replace
    finally:
        Path(tmp).unlink(missing_ok=True)


# -- checking and deploying ------------------------------------------------------------
def check_deployment(w3: Web3, deployment: Deployment) -> list[str]:
    """What keeps ``deployment`` from being usable by this node on ``w3``'s chain.

    Checks the chain id, that the chain has reached the deployment block (a development
    chain that restarted has not), that every address holds code, that the registries
    point at the manifest's Consortium, and that the manifest's artifact hashes equal the
    artifacts packaged with this node (same ABI and bytecode). Returns one message per
    problem; empty means usable. Raises ``ChainUnavailable`` if the node cannot be reached.
    """
    problems: list[str] = []
    try:
        chain_id = int(w3.eth.chain_id)
        if chain_id != deployment.chain_id:
            # Nothing else is comparable on another chain.
            return [f"the chain id is {chain_id}, the manifest's is {deployment.chain_id}"]
        head = int(w3.eth.block_number)
        if head < deployment.block_number:
            problems.append(
                f"the chain is at block {head}, before the deployment block "
                f"{deployment.block_number} (was the chain reset?)"
            )
        addresses = _addresses(deployment)
        with_code: set[str] = set()
        for name, address in addresses.items():
            if w3.eth.get_code(address):
                with_code.add(name)
            else:
                problems.append(f"no contract code at the {name} address {address}")
        for name, address in addresses.items():
            if name == "Consortium" or name not in with_code:
                continue
            contract = w3.eth.contract(address=address, abi=load_artifact(name).abi)
            try:
                points_to = contract.functions.consortium().call()
            except (Web3Exception, ValueError) as err:
                problems.append(f"{name} at {address} does not answer consortium() ({err})")
                continue
            if to_checksum_address(points_to) != deployment.consortium:
                problems.append(
                    f"{name} at {address} belongs to the Consortium {points_to}, "
                    f"not {deployment.consortium}"
                )
    except OSError as err:
        raise ChainUnavailable("the chain node cannot be reached") from err
    for name in DEPLOYED_CONTRACTS:
        packaged = artifact_hash(load_artifact(name))
        recorded = deployment.artifact_hashes.get(name)
        if recorded is None:
            problems.append(f"the manifest has no artifact hash for {name}")
        elif recorded != packaged:
            problems.append(
                f"{name} was deployed from other bytecode than this node ships "
                f"(sha256 {recorded[:12]}… deployed, {packaged[:12]}… packaged)"
            )
    return problems


def ensure_deployment(
    w3: Web3,
    manifest_path: str | os.PathLike[str],
    account: BaseAccount,
    founders: Sequence[tuple[str, str]],
    *,
    network: str | None = None,
    redeploy: bool = False,
) -> Deployment:
    """The network's deployment: loaded from ``manifest_path`` and checked against the chain,
    or, when there is no manifest (or ``redeploy``), deployed now and written there.

    Deploying sends from ``account`` (the node's own key, signing through web3's
    SignAndSendRawMiddleware on a copy of ``w3``: ``w3`` itself is not modified), which
    must be one of ``founders`` ((address, hospital name) pairs). The manifest records
    ``network`` (default: the manifest's file name without ``.json``). ``founders`` and
    ``account`` are unused when the manifest exists.

    Raises ``DeploymentMismatch`` when an existing manifest does not match the chain,
    ``ChainUnavailable`` when the node cannot be reached, ``DeploymentFailed`` (or
    ``ContractReverted``) when deploying fails, ``ChainError`` for an unreadable manifest.
    ``redeploy`` is for development chains that restarted empty; on a shared network it
    would strand every hospital on the old contracts.
    """
    path = Path(manifest_path)
    name = network if network is not None else path.stem
    if not redeploy and path.exists():
        deployment = read_manifest(path)
        problems = check_deployment(w3, deployment)
        if problems:
            raise DeploymentMismatch(path, problems)
        return deployment

    founder_addresses = {to_checksum_address(a) for a, _name in founders if is_address(a)}
    if account.address not in founder_addresses:
        raise DeploymentFailed(
            f"the deploying account {account.address} must be one of the founders: "
            "the node that deploys is a founding hospital"
        )
    deployment = _deploy_from(w3, account, founders)
    try:
        write_manifest(path, deployment, name, overwrite=redeploy)
    except FileExistsError as err:
        raise DeploymentFailed(
            f"{path} appeared while deploying (another deployment?); the contracts deployed "
            f"now are unused: {deployment.to_json()}"
        ) from err
    except OSError as err:
        # The contracts exist on chain: say where, so the operator can write it by hand.
        log.error("deployed but could not write %s: %s", path, deployment.to_json())
        raise ChainError(f"deployed, but cannot write the manifest {path}: {err}") from err
    log.info("deployed the contracts on chain %d; manifest %s", deployment.chain_id, path)
    return deployment


def _deploy_from(w3: Web3, account: BaseAccount, founders: Sequence[tuple[str, str]]) -> Deployment:
    # A second Web3 over the same provider and middleware: deploy_contracts sends from
    # default_account through eth_sendTransaction, which the signing middleware turns into
    # a locally signed eth_sendRawTransaction; the caller's w3 keeps no signer.
    signing = Web3(w3.provider, middleware=w3.middleware_onion.middleware)
    signing.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    signing.eth.default_account = account.address
    try:
        return deploy_contracts(signing, founders)
    except DeploymentFailed as err:
        # deploy_contracts keeps only the error type; the node's reason (e.g. "Sender
        # doesn't have enough funds") is what the operator needs.
        cause = err.__cause__
        if isinstance(cause, Web3RPCError):
            raise DeploymentFailed(f"{err} ({_rpc_message(cause)})") from cause
        raise


def _redact(url: str) -> str:
    """``url`` without user info, query nor fragment: RPC URLs may carry credentials or API
    keys, and these messages end up in logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _addresses(deployment: Deployment) -> dict[str, str]:
    return {
        "Consortium": deployment.consortium,
        "RecordRegistry": deployment.record_registry,
        "ConsentRegistry": deployment.consent_registry,
        "AccessLog": deployment.access_log,
    }


def _rpc_message(err: Web3RPCError) -> str:
    response = err.rpc_response or {}
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return str(err)


# -- command line ------------------------------------------------------------------------
def _founder(value: str) -> tuple[str, str]:
    address, sep, name = value.partition(":")
    if not sep or not is_address(address) or not name.strip():
        raise argparse.ArgumentTypeError(f"expected ADDRESS:NAME, got {value!r}")
    return to_checksum_address(address), name.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m node.chain.external",
        description="Deploy or check the emr-node contracts on an external EVM chain.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command, help_text in (
        ("deploy", "deploy unless the manifest exists (then check it); write the manifest"),
        ("check", "check an existing manifest against the chain"),
    ):
        p = sub.add_parser(command, help=help_text)
        p.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the chain node")
        p.add_argument("--network", required=True, help="manifest name, e.g. localhost")
        p.add_argument("--manifest", type=Path, help="manifest path (default: by network)")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    deploy = sub.choices["deploy"]
    deploy.add_argument(
        "--key-env",
        default="EMR_DEPLOYER_KEY",
        help="environment variable holding the deploying node's hex private key "
        "(never on the command line: it would show in ps)",
    )
    deploy.add_argument("--name", default="Hospital", help="the deploying hospital's name")
    deploy.add_argument(
        "--founder",
        action="append",
        type=_founder,
        default=[],
        metavar="ADDR:NAME",
        help="another founding hospital (repeatable); the deployer is always one",
    )
    deploy.add_argument(
        "--fund-wei", type=int, help="development chains only: set the deployer's balance"
    )
    deploy.add_argument(
        "--redeploy", action="store_true", help="deploy anew and replace the manifest (dev)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m node.chain.external``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        path = args.manifest or manifest_path(args.network)
        w3 = connect_rpc(args.rpc_url, timeout=args.timeout)
        if args.command == "check":
            problems = check_deployment(w3, read_manifest(path))
            if problems:
                raise DeploymentMismatch(path, problems)
            print(f"{path} matches the chain at {_redact(args.rpc_url)}")
            return 0
        account = _account_from_env(args.key_env)
        if args.fund_wei is not None:
            fund_account(w3, account.address, args.fund_wei)
        founders = [(account.address, args.name)]
        founders += [f for f in args.founder if f[0] != account.address]
        existed = path.exists() and not args.redeploy
        deployment = ensure_deployment(w3, path, account, founders, redeploy=args.redeploy)
    except (ChainError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{'checked' if existed else 'wrote'} {path} (consortium {deployment.consortium})")
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return 0


def _account_from_env(variable: str) -> BaseAccount:
    # Imported here: hsm is only needed by this command, not by library users.
    from hsm.account import SignerAccount
    from hsm.software import SoftwareSigner

    value = os.environ.get(variable, "").strip()
    if not value:
        raise ValueError(f"set {variable} to the deploying node's hex private key")
    try:
        key = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise ValueError(f"{variable} is not hex") from None
    return SignerAccount(SoftwareSigner(key))


if __name__ == "__main__":
    sys.exit(main())
