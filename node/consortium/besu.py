"""Per-hospital Hyperledger Besu configuration for the consortium's QBFT network, and the
kit writer behind ``emr-node consortium genesis``.

Each hospital runs one Besu validator beside its emr-node. The validator's identity is
its *node key* (secp256k1): the enode URL carries the public key, and the QBFT validator
address is the key's Ethereum address. That key is not the emr-node's signing account
(which sends the transactions): both addresses appear in the kit, for different lists.

Files per hospital (``<out>/<slug>/``): ``config.toml`` (Besu's TOML config file, keys
named as the command-line options), ``static-nodes.json`` (the other validators' enodes),
``permissions_config.toml`` (local permissioning: ``nodes-allowlist`` and
``accounts-allowlist``), ``emr-node.env`` (how the hospital's emr-node reaches its
validator) and, with ``generate_keys``, the node key (``key``, mode 0600) and ``key.pub``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_keys import keys
from eth_utils import is_hex_address, to_checksum_address

from node.consortium.genesis import QbftOptions, besu_genesis, validator_addresses

DEFAULT_P2P_PORT = 30303
DEFAULT_RPC_PORT = 8545
# What the emr-node uses (eth_*, net_version, web3_clientVersion): nothing that administers
# the node, votes or reads the transaction pool. The operator's APIs (QBFT votes, ADMIN,
# PERM) are on the WebSocket listener bound to 127.0.0.1 only.
EMR_NODE_APIS = ("ETH", "NET", "WEB3")
OPERATOR_APIS = ("QBFT", "ADMIN", "PERM", "ETH", "NET")
_ENODE = re.compile(r"^enode://([0-9a-fA-F]{128})@([^:@/\s]+):(\d{1,5})$")
_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{128}$")


@dataclass(frozen=True)
class Hospital:
    """One member hospital's validator.

    ``host``/``p2p_port``: where the other validators reach its Besu (devp2p, TCP+UDP).
    ``rpc_host``/``rpc_port``: the private interface its emr-node uses for JSON-RPC.
    ``node_public_key``: 64 bytes (the enode id), from ``besu public-key export``.
    ``validator``: the node key's address; derived from the public key when given.
    ``account``: the hospital's emr-node signing account (accounts allowlist, funding).
    """

    name: str
    host: str
    node_public_key: bytes | None = None
    validator: str | None = None
    p2p_port: int = DEFAULT_P2P_PORT
    rpc_host: str | None = None
    rpc_port: int = DEFAULT_RPC_PORT
    account: str | None = None
    fund_wei: int = 0

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a hospital needs a name")
        if not self.host or any(c in self.host for c in " @/:"):
            raise ValueError(f"{self.name}: host must be an IP address or DNS name")
        for port in (self.p2p_port, self.rpc_port):
            if not 1 <= port <= 65535:
                raise ValueError(f"{self.name}: port {port} out of range")
        if self.node_public_key is not None:
            if len(self.node_public_key) != 64:
                raise ValueError(f"{self.name}: the node public key must be 64 bytes")
            derived = public_key_address(self.node_public_key)
            if self.validator is not None and to_checksum_address(self.validator) != derived:
                raise ValueError(
                    f"{self.name}: validator {self.validator} is not the address of its node "
                    f"key ({derived}); the validator is the Besu node key's address"
                )
            object.__setattr__(self, "validator", derived)
        elif self.validator is not None:
            if not is_hex_address(self.validator):
                raise ValueError(f"{self.name}: not an address: {self.validator!r}")
            object.__setattr__(self, "validator", to_checksum_address(self.validator))
        if self.account is not None:
            if not is_hex_address(self.account):
                raise ValueError(f"{self.name}: not an address: {self.account!r}")
            object.__setattr__(self, "account", to_checksum_address(self.account))
        if self.fund_wei and self.account is None:
            raise ValueError(f"{self.name}: fund_wei needs the emr-node account")

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "hospital"

    @property
    def enode(self) -> str:
        if self.node_public_key is None:
            raise ValueError(f"{self.name}: no node public key, hence no enode URL")
        return f"enode://{self.node_public_key.hex()}@{self.host}:{self.p2p_port}"

    @property
    def rpc_url(self) -> str:
        return f"http://{self.rpc_host or self.host}:{self.rpc_port}"


# -- keys and enodes ---------------------------------------------------------------------------
def public_key_address(public_key: bytes) -> str:
    """The Ethereum address of a 64-byte secp256k1 public key (a QBFT validator address)."""
    return keys.PublicKey(public_key).to_checksum_address()


def parse_public_key(text: str) -> bytes:
    """A node public key as Besu exports it (0x + 128 hex digits) or an enode id."""
    text = text.strip()
    if not _HEX_KEY.match(text):
        raise ValueError("a node public key is 128 hex digits (64 bytes), optionally 0x-prefixed")
    return bytes.fromhex(text.removeprefix("0x"))


def parse_enode(url: str) -> tuple[bytes, str, int]:
    """(public key, host, port) of ``enode://<128 hex>@host:port``."""
    match = _ENODE.match(url.strip())
    if not match:
        raise ValueError(f"not an enode URL (enode://<128 hex>@host:port): {url!r}")
    return bytes.fromhex(match[1]), match[2], int(match[3])


def new_node_key() -> tuple[bytes, bytes]:
    """(private key, public key) of a fresh secp256k1 node key."""
    while True:
        secret = secrets.token_bytes(32)
        try:
            private = keys.PrivateKey(secret)
        except Exception:  # pragma: no cover - 0 or >= n: vanishingly rare
            continue
        return secret, private.public_key.to_bytes()


# -- hospitals file ----------------------------------------------------------------------------
def hospitals_from_mapping(data: Mapping[str, Any]) -> list[Hospital]:
    """Hospitals from a parsed JSON/TOML document: ``{"hospitals": [{name, host, ...}]}``."""
    entries = data.get("hospitals")
    if not isinstance(entries, list) or not entries:
        raise ValueError("the hospitals file needs a non-empty 'hospitals' list")
    allowed = {
        "name",
        "host",
        "p2p_port",
        "rpc_host",
        "rpc_port",
        "node_public_key",
        "validator",
        "enode",
        "account",
        "fund_wei",
    }
    out: list[Hospital] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"hospital #{i + 1} is not a table/object")
        unknown = set(entry) - allowed
        if unknown:
            raise ValueError(f"hospital #{i + 1}: unknown keys {sorted(unknown)}")
        fields = dict(entry)
        if "enode" in fields:
            key, host, port = parse_enode(str(fields.pop("enode")))
            fields.setdefault("host", host)
            fields.setdefault("p2p_port", port)
            fields["node_public_key"] = key
        elif isinstance(fields.get("node_public_key"), str):
            fields["node_public_key"] = parse_public_key(fields["node_public_key"])
        if "fund_wei" in fields:
            fields["fund_wei"] = int(fields["fund_wei"])
        try:
            out.append(Hospital(**fields))
        except TypeError as err:
            raise ValueError(f"hospital #{i + 1}: {err}") from err
    return out


def load_hospitals(path: Path) -> list[Hospital]:
    """Hospitals from a ``.json`` or ``.toml`` file (see ``hospitals_from_mapping``)."""
    import tomllib

    text = path.read_text()
    data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    return hospitals_from_mapping(data)


def hospital_from_option(value: str) -> Hospital:
    """``NAME=enode://<pubkey>@HOST:PORT`` or ``NAME=HOST[:PORT]`` (a key to generate)."""
    name, sep, rest = value.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--hospital wants NAME=ENODE or NAME=HOST[:PORT], got {value!r}")
    rest = rest.strip()
    if rest.startswith("enode://"):
        key, host, port = parse_enode(rest)
        return Hospital(name=name.strip(), host=host, p2p_port=port, node_public_key=key)
    host, _, port = rest.partition(":")
    return Hospital(name=name.strip(), host=host, p2p_port=int(port or DEFAULT_P2P_PORT))


# -- files -------------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the ASCII written here
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        return "[\n" + "".join(f"  {_toml_value(v)},\n" for v in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}")


def toml_document(items: Sequence[tuple[str, Any] | str]) -> str:
    """Top-level ``key=value`` lines; a plain string item is a comment line."""
    lines = []
    for item in items:
        if isinstance(item, str):
            lines.append(f"# {item}" if item else "")
        else:
            lines.append(f"{item[0]}={_toml_value(item[1])}")
    return "\n".join(lines) + "\n"


def permissions_toml(hospitals: Sequence[Hospital]) -> str:
    """Local permissioning: every validator's enode, every emr-node account."""
    accounts = [h.account for h in hospitals if h.account]
    return toml_document(
        [
            "Besu local permissioning (--permissions-*-config-file). Nodes: every consortium",
            "validator (the static nodes must be listed). Accounts: the hospitals' emr-node",
            "signing accounts, the only senders of transactions on this chain.",
            ("nodes-allowlist", [h.enode for h in hospitals]),
            ("accounts-allowlist", accounts),
        ]
    )


def config_toml(
    hospital: Hospital,
    *,
    install_dir: str,
    data_path: str,
    zero_gas: bool,
    accounts_allowlist: bool,
) -> str:
    """Besu's config.toml for ``hospital`` (paths under ``install_dir`` / ``data_path``)."""
    items: list[tuple[str, Any] | str] = [
        f"Besu validator of {hospital.name} (consortium QBFT network).",
        f"Validator (node key) address: {hospital.validator}",
        f"enode: {hospital.enode}",
        "",
        ("data-path", data_path),
        ("genesis-file", f"{install_dir}/genesis.json"),
        ("node-private-key-file", f"{data_path}/key"),
        ("sync-mode", "FULL"),
        "",
        "P2P: reachable by the other validators only (firewall + nodes allowlist).",
        ("p2p-host", hospital.host),
        ("p2p-port", hospital.p2p_port),
        ("discovery-enabled", False),
        ("static-nodes-file", f"{install_dir}/static-nodes.json"),
        "",
        "Local permissioning: allowlisted validators only, allowlisted senders only.",
        ("permissions-nodes-config-file-enabled", True),
        ("permissions-nodes-config-file", f"{install_dir}/permissions_config.toml"),
    ]
    if accounts_allowlist:
        items += [
            ("permissions-accounts-config-file-enabled", True),
            ("permissions-accounts-config-file", f"{install_dir}/permissions_config.toml"),
        ]
    else:
        items.append(
            "accounts allowlist off: not every hospital named its emr-node account "
            "(set them and regenerate, or use perm_addAccountsToAllowlist)"
        )
    items += [
        "",
        "JSON-RPC for the hospital's emr-node: private interface, read/send APIs only.",
        ("rpc-http-enabled", True),
        ("rpc-http-host", hospital.rpc_host or hospital.host),
        ("rpc-http-port", hospital.rpc_port),
        ("rpc-http-api", list(EMR_NODE_APIS)),
        ("host-allowlist", sorted({hospital.rpc_host or hospital.host, "localhost", "127.0.0.1"})),
        "",
        "Operator APIs (qbft_proposeValidatorVote, admin_*, perm_*): loopback only.",
        ("rpc-ws-enabled", True),
        ("rpc-ws-host", "127.0.0.1"),
        ("rpc-ws-port", 8546),
        ("rpc-ws-api", list(OPERATOR_APIS)),
        "",
        ("metrics-enabled", True),
        ("metrics-host", "127.0.0.1"),
        ("metrics-port", 9545),
    ]
    if zero_gas:
        items += [
            "",
            "Free gas: every node must accept zero-price transactions (genesis zeroBaseFee).",
            ("min-gas-price", 0),
            ("min-priority-fee", 0),
        ]
    return toml_document(items)


def emr_node_env(hospital: Hospital, network: str) -> str:
    lines = [
        f"# {hospital.name}: environment for its emr-node (external chain = its validator)",
        "EMR_CHAIN__BACKEND=rpc",
        f"EMR_CHAIN__RPC_URL={hospital.rpc_url}",
        f"EMR_CHAIN__NETWORK={network}",
        "EMR_CHAIN__FUND_DEV_ACCOUNT=false",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Kit:
    """What ``write_kit`` wrote."""

    out_dir: Path
    files: list[Path]
    generated_keys: list[Path]
    warnings: list[str]


def write_kit(
    out_dir: Path,
    hospitals: Sequence[Hospital],
    options: QbftOptions,
    *,
    network: str = "consortium",
    generate_keys: bool = False,
    install_dir: str = "/etc/besu",
    data_path: str = "/var/lib/besu",
) -> Kit:
    """Write genesis.json, hospitals.json, START.md and one directory per hospital.

    Raises ValueError (bad input: duplicates, missing keys) and FileExistsError (``out_dir``
    is not empty: a kit, and above all a node key, is never overwritten)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", network):
        raise ValueError("the network name may hold letters, digits, '.', '_' and '-'")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty: choose a new directory")
    slugs = [h.slug for h in hospitals]
    if len(set(slugs)) != len(slugs):
        raise ValueError("two hospitals have the same name (directory)")
    missing = [h.name for h in hospitals if h.node_public_key is None]
    if missing and not generate_keys:
        raise ValueError(
            "no node public key for " + ", ".join(missing) + ": give each hospital's "
            "node_public_key or enode (from `besu public-key export`), or --generate-keys"
        )
    pinned = [h.name for h in hospitals if h.node_public_key is None and h.validator]
    if pinned:
        raise ValueError(
            "validator address without its node key for " + ", ".join(pinned) + ": a "
            "generated key would have another address; give the node public key instead"
        )
    warnings: list[str] = []
    keys_to_write: dict[str, bytes] = {}
    resolved: list[Hospital] = []
    for h in hospitals:
        if h.node_public_key is None:
            private, public = new_node_key()
            keys_to_write[h.slug] = private
            h = Hospital(**{**h.__dict__, "node_public_key": public, "validator": None})
        resolved.append(h)
    validators = validator_addresses([h.validator or "" for h in resolved])
    for label, endpoint in (
        ("p2p", lambda h: f"{h.host}:{h.p2p_port}"),
        ("JSON-RPC", lambda h: h.rpc_url),
    ):
        seen: dict[str, str] = {}
        for h in resolved:
            value = endpoint(h)
            if value in seen:
                raise ValueError(f"{h.name} and {seen[value]} share the {label} endpoint {value}")
            seen[value] = h.name
    if len(resolved) < 4:
        warnings.append(
            f"{len(resolved)} validators: QBFT is Byzantine fault tolerant from 4 validators "
            "on; with fewer, a validator may stop (while 2/3 remain) but none may misbehave"
        )
    alloc = dict(options.alloc)
    for h in resolved:
        if h.fund_wei and h.account:
            alloc[h.account] = alloc.get(h.account, 0) + h.fund_wei
    if alloc != dict(options.alloc):
        options = QbftOptions(**{**options.__dict__, "alloc": alloc})
    if not options.zero_gas and not alloc:
        raise ValueError(
            "gas has a price but no account is funded: fund the hospitals' emr-node "
            "accounts (--fund ADDRESS=WEI or fund_wei) or use zero gas"
        )
    if not options.zero_gas:
        unfunded = [h.name for h in resolved if not h.account or h.account not in alloc]
        if unfunded:
            warnings.append(
                "gas has a price and these emr-node accounts are not funded: " + ", ".join(unfunded)
            )
    accounts_allowlist = all(h.account for h in resolved)
    if not accounts_allowlist:
        warnings.append(
            "the accounts allowlist is off: not every hospital gave its emr-node account"
        )
    if keys_to_write:
        warnings.append(
            f"generated {len(keys_to_write)} node key(s) on this machine: move each `key` "
            "to its hospital's validator (mode 0600) and delete the copies here; better, "
            "let every hospital generate its own key and send only the public key"
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    generated: list[Path] = []

    def put(path: Path, text: str, mode: int = 0o644) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(path, mode)  # the umask must not widen nor narrow it
        files.append(path)

    genesis = besu_genesis(validators, options)
    put(out_dir / "genesis.json", json.dumps(genesis, indent=2) + "\n")
    summary = {
        "network": network,
        "chain_id": options.chain_id,
        "validators": validators,
        "hospitals": [
            {
                "name": h.name,
                "directory": h.slug,
                "validator": h.validator,
                "enode": h.enode,
                "rpc_url": h.rpc_url,
                "emr_node_account": h.account,
            }
            for h in resolved
        ],
    }
    put(out_dir / "hospitals.json", json.dumps(summary, indent=2) + "\n")
    permissions = permissions_toml(resolved)
    for h in resolved:
        d = out_dir / h.slug
        put(
            d / "config.toml",
            config_toml(
                h,
                install_dir=install_dir,
                data_path=data_path,
                zero_gas=options.zero_gas,
                accounts_allowlist=accounts_allowlist,
            ),
        )
        others = [o.enode for o in resolved if o is not h]
        put(d / "static-nodes.json", json.dumps(others, indent=2) + "\n")
        put(d / "permissions_config.toml", permissions)
        put(d / "emr-node.env", emr_node_env(h, network))
        if h.slug in keys_to_write:
            put(d / "key", "0x" + keys_to_write[h.slug].hex(), 0o600)
            put(d / "key.pub", "0x" + (h.node_public_key or b"").hex() + "\n")
            generated.append(d / "key")
    put(
        out_dir / "START.md",
        start_md(resolved, options, network, install_dir, data_path, bool(keys_to_write)),
    )
    return Kit(out_dir, files, generated, warnings)


def start_md(
    hospitals: Sequence[Hospital],
    options: QbftOptions,
    network: str,
    install_dir: str,
    data_path: str,
    generated: bool,
) -> str:
    """The operator's steps, with this network's values filled in."""
    rows = "\n".join(
        f"| {h.name} | `{h.slug}/` | `{h.validator}` | `{h.host}:{h.p2p_port}` | `{h.rpc_url}` |"
        for h in hospitals
    )
    keys_step = (
        "Node keys were generated by `--generate-keys` into `<hospital>/key` (mode 0600). "
        "Move each key to its hospital's validator host over a secure channel, then delete "
        "every copy on this machine (`shred -u */key`)."
        if generated
        else "Each hospital generated its node key on its own validator host and sent only "
        "the public key; keep it that way."
    )
    fee = (
        "Free gas: `zeroBaseFee` and `baseFeePerGas 0x0` in the genesis, `min-gas-price=0` "
        "and `min-priority-fee=0` in every config.toml. A node with a higher minimum silently "
        "drops the emr-nodes' zero-price transactions; check with `eth_gasPrice` (0x0)."
        if options.zero_gas
        else "Gas has a price: the emr-node accounts listed in the genesis `alloc` pay for "
        "their transactions; top them up by transfers from a funded account."
    )
    return f"""# Starting the `{network}` QBFT network (chain id {options.chain_id})

Generated by `emr-node consortium genesis`. Block period {options.block_period} s, epoch
{options.epoch} blocks, request timeout {options.request_timeout_seconds} s,
{len(hospitals)} validators.

| hospital | directory | validator (node key address) | p2p | JSON-RPC for its emr-node |
|---|---|---|---|---|
{rows}

## 1. Node keys

The QBFT validator is the Besu *node key's* address, not the emr-node's signing account.
On each validator host: `besu --data-path={data_path} public-key export
--to={data_path}/key.pub` (creates `{data_path}/key` if missing) and `besu
--data-path={data_path} public-key export-address`. {keys_step}
The key file must be readable by the Besu user only (`chmod 600 {data_path}/key`); or keep
it in an HSM with Besu's `--security-module` plugin.

## 2. Install the files

On each hospital's validator host, copy `genesis.json` and the hospital's directory:

```sh
install -d -m 755 {install_dir} && install -d -m 700 {data_path}
install -m 644 genesis.json <hospital>/config.toml <hospital>/static-nodes.json {install_dir}/
install -m 644 <hospital>/permissions_config.toml {install_dir}/
```

`permissions_config.toml` must stay writable by Besu if you change the allowlists at
run time (`perm_addNodesToAllowlist`, `perm_addAccountsToAllowlist`).

## 3. Firewall

Open TCP and UDP {", ".join(sorted({str(h.p2p_port) for h in hospitals}))} (p2p) between
the validators only. The JSON-RPC port listens on the private interface named in each
`config.toml` (`rpc-http-host`); allow only the hospital's emr-node hosts to reach it.
The WebSocket port 8546 (QBFT, ADMIN, PERM APIs) listens on 127.0.0.1 only.

## 4. Start

Start every validator (`besu --config-file={install_dir}/config.toml`). Blocks are produced
once more than 2/3 of the validators are connected. Check from each host:

```sh
curl -s -X POST -H 'Content-Type: application/json' --data \\
  '{{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}}' <rpc_url>
curl -s -X POST -H 'Content-Type: application/json' --data \\
  '{{"jsonrpc":"2.0","method":"net_peerCount","params":[],"id":1}}' <rpc_url>
```

{fee}

## 5. Point each emr-node at its validator

`<hospital>/emr-node.env` holds the chain settings of that hospital's emr-node
(`EMR_CHAIN__BACKEND=rpc`, `EMR_CHAIN__RPC_URL=<its validator's JSON-RPC>`,
`EMR_CHAIN__NETWORK={network}`). The founding hospital starts first: its emr-node deploys
the contracts and writes `<data_dir>/deployments/{network}.json`; copy that manifest (and
the ZK and wallet manifests beside it) to every other hospital's data directory before
their first start, then admit them through the Consortium contract's governance vote.

## 6. Validators and membership

A hospital joins: (1) every validator adds its enode to `nodes-allowlist` and its emr-node
account to `accounts-allowlist`; (2) it starts its Besu with this genesis and syncs as a
plain node; (3) the members vote it into the Consortium contract (`emr-node governance`)
and its emr-node starts; (4) once its node is synced and peered, a majority of validators
call `qbft_proposeValidatorVote(<its validator address>, true)`, then
`qbft_discardValidatorVote`. A hospital leaves: (1) the Consortium vote removes it (its
emr-node can no longer anchor or relay); (2) a majority of validators vote
`qbft_proposeValidatorVote(<address>, false)`; (3) its enode and account leave the
allowlists.
See the emr-node documentation, "A QBFT network (Hyperledger Besu)".
"""
