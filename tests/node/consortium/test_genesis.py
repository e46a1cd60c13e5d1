"""``emr-node consortium genesis``: the Besu QBFT kit, checked on paper (Besu is not
installable here). The extraData is compared with the vectors in Besu's QBFT docs and
decoded with the independent ``rlp`` package; every written file is parsed."""

from __future__ import annotations

import json
import secrets
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth_keys import keys
from eth_utils import to_checksum_address
from typer.testing import CliRunner

from node.cli.main import app
from node.consortium.besu import Hospital, hospitals_from_mapping, public_key_address, write_kit
from node.consortium.genesis import QbftOptions, besu_genesis, qbft_extra_data, rlp_encode
from node.settings import Settings

# Besu docs, "Configure QBFT consensus", genesis for block header validator selection
# (besu-docs docs/private-networks/how-to/configure/consensus/qbft.md).
DOCS_VALIDATORS = [
    "0x64a702e6263b7297a96638cac6ae65e6541f4169",
    "0x3923390ad55e90c237593b3b0e401f3b08a03185",
    "0xaefdb9a738c9f433e5b6b212a6d62f6370c2f692",
    "0xc7eeb9a4e00ce683cf93039b212648e01c6c6b78",
]
DOCS_EXTRA_DATA = (
    "0xf87aa00000000000000000000000000000000000000000000000000000000000000000f85494"
    "64a702e6263b7297a96638cac6ae65e6541f416994"
    "3923390ad55e90c237593b3b0e401f3b08a0318594"
    "aefdb9a738c9f433e5b6b212a6d62f6370c2f69294"
    "c7eeb9a4e00ce683cf93039b212648e01c6c6b78c080c0"
)
# Same page, contract validator selection: no validators in the header.
DOCS_EMPTY_EXTRA_DATA = (
    "0xe5a00000000000000000000000000000000000000000000000000000000000000000c0c080c0"
)

runner = CliRunner()


def node_key() -> tuple[bytes, bytes]:
    private = keys.PrivateKey(secrets.token_bytes(32))
    return private.to_bytes(), private.public_key.to_bytes()


def decode_extra_data(extra: str) -> tuple[bytes, list[str], Any, bytes, list[Any]]:
    vanity, validators, vote, round_, seals = rlp.decode(bytes.fromhex(extra[2:]))
    return vanity, [to_checksum_address(v) for v in validators], vote, round_, seals


# -- extraData ---------------------------------------------------------------------------------
def test_extra_data_matches_besu_docs() -> None:
    assert qbft_extra_data(DOCS_VALIDATORS) == DOCS_EXTRA_DATA
    # Checksummed or not, the bytes are the same.
    assert qbft_extra_data([to_checksum_address(v) for v in DOCS_VALIDATORS]) == DOCS_EXTRA_DATA
    assert rlp_encode([bytes(32), [], [], b"", []]).hex() == DOCS_EMPTY_EXTRA_DATA[2:]


@pytest.mark.parametrize("n", [1, 3, 4, 7, 30])
def test_extra_data_decodes_to_the_validators(n: int) -> None:
    validators = [public_key_address(node_key()[1]) for _ in range(n)]
    extra = qbft_extra_data(validators)
    vanity, decoded, vote, round_, seals = decode_extra_data(extra)
    assert vanity == bytes(32)
    assert decoded == validators  # order kept
    assert vote == [] and round_ == b"" and seals == []
    assert rlp.encode([bytes(32), [bytes.fromhex(v[2:]) for v in validators], [], b"", []]) == (
        bytes.fromhex(extra[2:])
    )


def test_rlp_long_lengths() -> None:
    for item in (b"", b"\x7f", b"\x80", b"x" * 55, b"x" * 56, b"y" * 1024, [b"z" * 60] * 5):
        assert rlp_encode(item) == rlp.encode(item)


@pytest.mark.parametrize(
    ("validators", "message"),
    [
        ([], "at least one validator"),
        (["0x1234"], "not a 20-byte hex address"),
        ([DOCS_VALIDATORS[0], DOCS_VALIDATORS[0].upper().replace("0X", "0x")], "listed twice"),
    ],
)
def test_extra_data_refuses_bad_validators(validators: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        qbft_extra_data(validators)


def test_genesis_fields() -> None:
    options = QbftOptions(chain_id=2026, block_period=3, epoch=100, timestamp=1_700_000_000)
    g = besu_genesis(DOCS_VALIDATORS, options)
    assert g["config"]["qbft"] == {
        "blockperiodseconds": 3,
        "epochlength": 100,
        "requesttimeoutseconds": 6,
    }
    assert g["config"]["chainId"] == 2026
    assert g["config"]["zeroBaseFee"] is True and g["baseFeePerGas"] == "0x0"
    assert g["config"]["londonBlock"] == 0 and g["config"]["cancunTime"] == 0
    assert g["extraData"] == DOCS_EXTRA_DATA
    assert g["mixHash"] == "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"
    assert g["timestamp"] == hex(1_700_000_000)
    assert g["alloc"] == {}
    priced = besu_genesis(
        DOCS_VALIDATORS,
        QbftOptions(
            chain_id=2026, zero_gas=False, request_timeout=9, alloc={DOCS_VALIDATORS[1]: 5}
        ),
    )
    assert "zeroBaseFee" not in priced["config"] and "baseFeePerGas" not in priced
    assert priced["config"]["qbft"]["requesttimeoutseconds"] == 9
    assert priced["alloc"] == {DOCS_VALIDATORS[1][2:]: {"balance": "0x5"}}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chain_id": 31337}, "dev chain"),
        ({"chain_id": 0}, "positive"),
        ({"chain_id": 7, "block_period": 0}, "block period"),
        ({"chain_id": 7, "epoch": 0}, "epoch"),
        ({"chain_id": 7, "alloc": {"0x12": 1}}, "20-byte"),
    ],
)
def test_options_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QbftOptions(**kwargs)


# -- the kit -----------------------------------------------------------------------------------
def _hospitals_toml(path: Path, pubkeys: list[bytes], accounts: list[str]) -> None:
    lines = ['network = "ignored-by-the-kit"']
    for i, (pub, account) in enumerate(zip(pubkeys, accounts, strict=True)):
        lines += [
            "[[hospitals]]",
            f'name = "Hospital {chr(65 + i)}"',
        ]
        if i == 0:  # one hospital given as an enode URL, with its validator pinned
            lines += [
                f'enode = "enode://{pub.hex()}@10.0.{i}.10:30303"',
                f'validator = "{public_key_address(pub).lower()}"',
            ]
        else:
            lines += [f'host = "10.0.{i}.10"', f'node_public_key = "0x{pub.hex()}"']
        lines += [f'rpc_host = "10.1.{i}.10"', f"rpc_port = {8545 + i}", f'account = "{account}"']
    path.write_text("\n".join(lines) + "\n")


def test_cli_writes_a_kit_that_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pubkeys = [node_key()[1] for _ in range(4)]
    accounts = [public_key_address(node_key()[1]) for _ in range(4)]  # emr-node accounts
    spec = tmp_path / "hospitals.toml"
    _hospitals_toml(spec, pubkeys, accounts)
    out = tmp_path / "kit"
    result = runner.invoke(
        app,
        [
            "consortium", "genesis", "--out", str(out), "--chain-id", "4242",
            "--hospitals", str(spec), "--block-period", "1", "--epoch", "500",
            "--request-timeout", "3", "--network", "emr-qbft",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "START.md" in result.output
    validators = [public_key_address(p) for p in pubkeys]
    enodes = [f"enode://{p.hex()}@10.0.{i}.10:30303" for i, p in enumerate(pubkeys)]

    genesis = json.loads((out / "genesis.json").read_text())
    assert genesis["config"]["chainId"] == 4242
    assert genesis["config"]["qbft"] == {
        "blockperiodseconds": 1,
        "epochlength": 500,
        "requesttimeoutseconds": 3,
    }
    assert decode_extra_data(genesis["extraData"])[1] == validators
    summary = json.loads((out / "hospitals.json").read_text())
    assert summary["validators"] == validators
    assert [h["enode"] for h in summary["hospitals"]] == enodes
    assert [h["emr_node_account"] for h in summary["hospitals"]] == accounts
    start = (out / "START.md").read_text()
    assert "qbft_proposeValidatorVote" in start and "EMR_CHAIN__RPC_URL" in start

    slugs = ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == slugs
    for i, slug in enumerate(slugs):
        d = out / slug
        assert not (d / "key").exists()  # keys stay with the hospitals
        config = tomllib.loads((d / "config.toml").read_text())
        assert config["p2p-host"] == f"10.0.{i}.10"
        assert config["rpc-http-host"] == f"10.1.{i}.10"  # the private interface
        assert config["rpc-http-port"] == 8545 + i
        assert set(config["rpc-http-api"]) == {"ETH", "NET", "WEB3"}
        assert f"10.1.{i}.10" in config["host-allowlist"] and "*" not in config["host-allowlist"]
        assert "QBFT" in config["rpc-ws-api"] and config["rpc-ws-host"] == "127.0.0.1"
        assert config["min-gas-price"] == 0
        assert config["permissions-nodes-config-file-enabled"] is True
        assert config["permissions-accounts-config-file-enabled"] is True
        assert config["genesis-file"] == "/etc/besu/genesis.json"
        assert config["discovery-enabled"] is False
        permissions = tomllib.loads((d / "permissions_config.toml").read_text())
        others = [e for j, e in enumerate(enodes) if j != i]
        assert set(others) <= set(permissions["nodes-allowlist"])
        assert permissions["nodes-allowlist"] == enodes
        assert permissions["accounts-allowlist"] == accounts
        assert json.loads((d / "static-nodes.json").read_text()) == others
        env = dict(
            line.split("=", 1)
            for line in (d / "emr-node.env").read_text().splitlines()
            if line and not line.startswith("#")
        )
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        chain = Settings().chain  # the emr-node accepts the environment as written
        assert chain.backend == "rpc"
        assert chain.rpc_url == f"http://10.1.{i}.10:{8545 + i}"
        assert chain.network == "emr-qbft"
        assert chain.fund_dev_account is False


def test_generate_keys(tmp_path: Path) -> None:
    out = tmp_path / "kit"
    result = runner.invoke(
        app,
        [
            "consortium", "genesis", "--out", str(out), "--chain-id", "4243",
            "--hospital", "North=10.0.0.1", "--hospital", "South=10.0.0.2:30304",
            "--hospital", "East=10.0.0.3",
        ],
    )  # fmt: skip
    assert result.exit_code != 0  # no public keys and no --generate-keys
    assert "--generate-keys" in result.output
    result = runner.invoke(
        app,
        [
            "consortium", "genesis", "--out", str(out), "--chain-id", "4243",
            "--hospital", "North=10.0.0.1", "--hospital", "South=10.0.0.2:30304",
            "--hospital", "East=10.0.0.3", "--generate-keys",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "generated 3 node key(s)" in result.output  # the warning
    assert "Byzantine fault tolerant from 4" in result.output
    genesis = json.loads((out / "genesis.json").read_text())
    validators = decode_extra_data(genesis["extraData"])[1]
    enodes = []
    for slug, validator in zip(["north", "south", "east"], validators, strict=True):
        key_file = out / slug / "key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        private = keys.PrivateKey(bytes.fromhex(key_file.read_text().removeprefix("0x")))
        public = private.public_key.to_bytes()
        assert (out / slug / "key.pub").read_text().strip() == "0x" + public.hex()
        assert private.public_key.to_checksum_address() == validator  # node key -> validator
        enodes.append(public.hex())
    static = json.loads((out / "south" / "static-nodes.json").read_text())
    assert static == [
        f"enode://{enodes[0]}@10.0.0.1:30303",
        f"enode://{enodes[2]}@10.0.0.3:30303",
    ]
    config = tomllib.loads((out / "south" / "config.toml").read_text())
    assert config["p2p-port"] == 30304
    assert "permissions-accounts-config-file-enabled" not in config  # no accounts given
    # A kit, and its keys, are never overwritten.
    before = (out / "north" / "key").read_bytes()
    again = runner.invoke(
        app,
        [
            "consortium", "genesis", "--out", str(out), "--chain-id", "4243",
            "--hospital", "North=10.0.0.1", "--generate-keys",
        ],
    )  # fmt: skip
    assert again.exit_code != 0 and "not empty" in again.output
    assert (out / "north" / "key").read_bytes() == before


def test_priced_gas_needs_funds(tmp_path: Path) -> None:
    pub = node_key()[1]
    hospital = f"Solo=enode://{pub.hex()}@10.0.0.1:30303"
    common = ["consortium", "genesis", "--chain-id", "4244", "--hospital", hospital]
    refused = runner.invoke(app, [*common, "--out", str(tmp_path / "a"), "--priced-gas"])
    assert refused.exit_code != 0 and "no account is funded" in refused.output
    funded = "0x" + "ab" * 20
    ok = runner.invoke(
        app,
        [*common, "--out", str(tmp_path / "b"), "--priced-gas", "--fund", f"{funded}=0x10"],
    )
    assert ok.exit_code == 0, ok.output
    genesis = json.loads((tmp_path / "b" / "genesis.json").read_text())
    assert genesis["alloc"] == {"ab" * 20: {"balance": "0x10"}}
    assert "zeroBaseFee" not in genesis["config"]
    config = tomllib.loads((tmp_path / "b" / "solo" / "config.toml").read_text())
    assert "min-gas-price" not in config


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "non-empty 'hospitals' list"),
        ([{"name": "A", "host": "h", "colour": "red"}], "unknown keys"),
        ([{"name": "A", "enode": "enode://12@h:1"}], "not an enode URL"),
        ([{"name": "A", "host": "h", "node_public_key": "0x12"}], "128 hex digits"),
        ([{"name": "A", "host": "h:1"}], "host must be"),
    ],
)
def test_bad_hospitals_file(entries: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hospitals_from_mapping({"hospitals": entries})


def test_validator_must_be_the_node_key_address(tmp_path: Path) -> None:
    pub = node_key()[1]
    other = public_key_address(node_key()[1])
    with pytest.raises(ValueError, match="not the address of its node key"):
        Hospital(name="A", host="h", node_public_key=pub, validator=other)
    # A bare validator address cannot become an enode, and a generated key would differ.
    lone = Hospital(name="A", host="h", validator=other)
    with pytest.raises(ValueError, match="without its node key"):
        write_kit(tmp_path / "k", [lone], QbftOptions(chain_id=9), generate_keys=True)
    twins = [
        Hospital(name="A", host="h", node_public_key=pub),
        Hospital(name="B", host="h", node_public_key=node_key()[1]),
    ]
    with pytest.raises(ValueError, match="share the p2p endpoint h:30303"):
        write_kit(tmp_path / "k", twins, QbftOptions(chain_id=9))
    same_key = [
        Hospital(name="A", host="h1", node_public_key=pub),
        Hospital(name="B", host="h2", node_public_key=pub),
    ]
    with pytest.raises(ValueError, match="listed twice"):
        write_kit(tmp_path / "k", same_key, QbftOptions(chain_id=9))
    assert not (tmp_path / "k").exists()  # nothing written on refusal
