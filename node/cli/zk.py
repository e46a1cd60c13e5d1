"""``emr-node zk ...``: the circuit toolkit (compile, setup, prove, verify, export, policies,
ceremony) and the clinician's side of anonymous reads (credentials, proofs, reads)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

zk_app = typer.Typer(
    help="Zero-knowledge circuits, keys, ceremonies and anonymous reads.", no_args_is_help=True
)
ceremony_app = typer.Typer(help="Multi-party phase-2 setup (snarkjs).", no_args_is_help=True)
credential_app = typer.Typer(
    help="Clinician credentials (issued by hospitals).", no_args_is_help=True
)
identity_app = typer.Typer(help="A clinician's identity (secret).", no_args_is_help=True)
policy_app = typer.Typer(help="Category policies (DSL and on-chain).", no_args_is_help=True)
zk_app.add_typer(ceremony_app, name="ceremony")
zk_app.add_typer(credential_app, name="credential")
zk_app.add_typer(identity_app, name="identity")
zk_app.add_typer(policy_app, name="policy")

KeysDir = Annotated[Path, typer.Option("--keys-dir", help="where circuit keys live")]
DEFAULT_KEYS = Path("~/.cache/emr-node/zk")
Url = Annotated[str, typer.Option("--url", envvar="EMR_URL", help="the node's API URL")]
Token = Annotated[
    str | None, typer.Option("--token", envvar="EMR_TOKEN", help="hospital API token")
]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _guard(fn: Any) -> Any:
    """Run ``fn``; toolkit, API and file errors become one-line CLI messages."""
    from node.client import ApiError
    from node.exceptions import NodeError
    from zk.exceptions import ZKError

    try:
        return fn()
    except (ZKError, ApiError, NodeError, OSError, ValueError) as err:
        _fail(str(err))


def _spec(name: str) -> Any:
    from zk.registry import get_circuit

    return _guard(lambda: get_circuit(name))


@zk_app.command("circuits")
def circuits() -> None:
    """List the registered circuits with their public inputs and constraint budgets."""
    from zk.registry import load_registry

    for spec in _guard(load_registry).values():
        typer.echo(
            f"{spec.name}: budget {spec.budget} constraints, public "
            f"[{', '.join(spec.public_inputs)}]"
        )


@zk_app.command("compile")
def compile_(name: str) -> None:
    """Compile with circom --O2; print constraints and wires per component; check the budget."""
    from zk.compiler import check_budget, compile_circuit

    spec = _spec(name)
    report = _guard(lambda: compile_circuit(spec))
    typer.echo(report.table())
    _guard(lambda: check_budget(report, spec))
    typer.echo(f"within budget ({report.constraints} <= {spec.budget})")


@zk_app.command("setup")
def setup(name: str, keys_dir: KeysDir = DEFAULT_KEYS) -> None:
    """Single-party dev setup (tests and trials only; a consortium runs a ceremony)."""
    from zk.setup import dev_setup

    spec = _spec(name)
    started = time.perf_counter()
    keys = _guard(lambda: dev_setup(spec, keys_dir.expanduser()))
    typer.echo(f"keys for {name} in {keys.directory} ({time.perf_counter() - started:.1f} s)")


def _keys(name: str, keys_dir: Path) -> Any:
    from zk.artifacts import load_keys

    return _guard(lambda: load_keys(_spec(name), keys_dir.expanduser()))


@zk_app.command("prove")
def prove(
    name: str,
    inputs: Annotated[Path, typer.Option("--inputs", help="JSON: every signal by name")],
    out: Annotated[Path | None, typer.Option("--out", help="default: stdout")] = None,
    keys_dir: KeysDir = DEFAULT_KEYS,
) -> None:
    """Prove; the proof is verified before it is written."""
    from zk.prover import Groth16Prover

    prover = Groth16Prover(_keys(name, keys_dir))
    values = _guard(lambda: json.loads(inputs.read_text()))
    proof = _guard(lambda: prover.prove(values))
    text = json.dumps(proof.to_json(), indent=2)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n")
        typer.echo(f"wrote a verified proof to {out}")


@zk_app.command("verify")
def verify(
    name: str,
    proof_file: Annotated[Path, typer.Option("--proof", help="JSON from `zk prove`")],
    keys_dir: KeysDir = DEFAULT_KEYS,
    cross_check: Annotated[
        bool, typer.Option("--cross-check", help="also verify with py_ecc and snarkjs")
    ] = False,
) -> None:
    """Verify a proof (exit 1 if it does not verify)."""
    from zk.models import Proof
    from zk.verifier import Groth16Verifier

    keys = _keys(name, keys_dir)
    data = _guard(lambda: json.loads(proof_file.read_text()))
    proof = _guard(
        lambda: Proof.from_words(
            [int(w, 16) for w in data["proof"]], tuple(int(x) for x in data["public_inputs"])
        )
    )
    results = {"groth16py": Groth16Verifier(keys.verifying_key).verify(proof)}
    if cross_check:
        from zk.reference import ReferenceVerifier
        from zk.snarkjs import snarkjs_verify

        results["py_ecc"] = ReferenceVerifier(keys.verification_key_json).verify(proof)
        results["snarkjs"] = _guard(lambda: snarkjs_verify(keys.verification_key_json, proof))
    for verifier, ok in results.items():
        typer.echo(f"{verifier}: {'valid' if ok else 'INVALID'}")
    if not all(results.values()):
        raise typer.Exit(1)


@zk_app.command("export-verifier")
def export_verifier(
    name: str,
    out: Annotated[Path, typer.Option("--out", help="the .sol file to write")],
    contract: Annotated[str | None, typer.Option(help="contract name prefix")] = None,
) -> None:
    """Write the Solidity verifier of a circuit (key given at deployment, batch verification)."""
    from zk.export.solidity import render_verifier

    spec = _spec(name)
    prefix = contract or "".join(part.title() for part in spec.name.split("_"))
    source = _guard(lambda: render_verifier(prefix, spec.n_public, spec.name))
    out.write_text(source)
    typer.echo(f"wrote {prefix}Verifier ({spec.n_public} public inputs) to {out}")


# -- policies -------------------------------------------------------------------------
@policy_app.command("compile")
def policy_compile(
    source: Annotated[Path, typer.Argument(help="a file in the policy language")],
    out_dir: Annotated[Path, typer.Option("--out")] = Path("build/zk/policies"),
) -> None:
    """Generate the circom main component and spec of each policy in the file."""
    from zk.policy.compiler import compile_policy
    from zk.policy.grammar import parse_policies

    policies = _guard(lambda: parse_policies(source.read_text()))
    for policy in policies:
        compiled = _guard(lambda p=policy: compile_policy(p, out_dir))
        typer.echo(
            f"{compiled.spec.name}: {compiled.spec.source} (~{compiled.estimate} constraints; "
            f"public [{', '.join(compiled.spec.public_inputs)}])"
        )


@policy_app.command("propose")
def policy_propose(
    category: str,
    roles: Annotated[
        str, typer.Option(help="comma-separated roles, e.g. physician,nurse ('' for nobody)")
    ],
    url: Url = "http://127.0.0.1:8700",
    token: Token = None,
) -> None:
    """Propose which roles may read a category with a proof: a Consortium vote (hospital
    token); the other members vote with `emr-node governance vote ID`."""
    from node.client import EmrClient

    wanted = [r.strip() for r in roles.split(",") if r.strip()]
    with EmrClient(url, token) as client:
        result = _guard(lambda: client.zk.propose_policy(category, wanted))
    typer.echo(json.dumps(result, indent=2))


@policy_app.command("show")
def policy_show(category: str, url: Url = "http://127.0.0.1:8700") -> None:
    """A category's roles policy now and the open proposals to change it."""
    from node.client import EmrClient

    with EmrClient(url) as client:
        result = _guard(lambda: client.zk.policy(category))
    typer.echo(json.dumps(result, indent=2))


# -- identities, credentials and reads ------------------------------------------------
@identity_app.command("new")
def identity_new(
    out: Annotated[Path, typer.Option("--out", help="identity file (kept secret, 0600)")],
) -> None:
    """Create a clinician identity; hand only its commitment to the hospital."""
    from zk.credentials import Identity

    if out.exists():
        _fail(f"{out} exists: an identity is never overwritten")
    identity = Identity.generate()
    _guard(lambda: identity.save(out))
    typer.echo(f"identity commitment {identity.commitment}\nsaved to {out} (keep it secret)")


@identity_app.command("accept")
def identity_accept(
    identity_file: Annotated[Path, typer.Argument(help="the identity file")],
    receipt: Annotated[
        Path, typer.Option("--receipt", help="the hospital's answer to the issuance (JSON)")
    ],
) -> None:
    """Store the credential the hospital issued to this identity in the identity file
    (checked: the leaf must be the one the registry built from these attributes)."""
    from zk.credentials import Identity, IssuedCredential, role_index
    from zk.exceptions import InputError

    def accept() -> IssuedCredential:
        identity = Identity.load(identity_file)
        data = json.loads(receipt.read_text())
        entries = data.get("credentials", [data]) if isinstance(data, dict) else data
        mine = [e for e in entries if str(e.get("identity_commitment")) == str(identity.commitment)]
        if not mine:
            raise InputError("the receipt holds no credential for this identity")
        entry = mine[0]
        issued = IssuedCredential(
            identity,
            int(entry["hospital_id"]),
            role_index(entry["role"]),
            int(entry["licence_expiry"]),
        )
        if str(issued.leaf) != str(entry["leaf"]):
            raise InputError("the receipt's leaf does not match its attributes")
        issued.save(identity_file)
        return issued

    issued = _guard(accept)
    typer.echo(
        f"credential leaf {issued.leaf}: {issued.role_name} of hospital {issued.hospital_id}, "
        f"licence until {issued.licence_expiry}; saved to {identity_file}"
    )


@credential_app.command("issue")
def credential_issue(
    identity_commitment: str,
    clinician: Annotated[str, typer.Option(help="the clinician's address in the directory")],
    out: Annotated[Path | None, typer.Option("--out", help="receipt file (JSON)")] = None,
    url: Url = "http://127.0.0.1:8700",
    token: Token = None,
) -> None:
    """Issue a credential (hospital token): the node takes role and licence expiry from its
    clinician directory; the clinician stores the receipt with `zk identity accept`."""
    from node.client import EmrClient

    with EmrClient(url, token) as client:
        result = _guard(
            lambda: client.zk.issue_credentials([(int(identity_commitment, 0), clinician)])
        )
    text = json.dumps(result, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    typer.echo(text)


@credential_app.command("revoke")
def credential_revoke(leaf: str, url: Url = "http://127.0.0.1:8700", token: Token = None) -> None:
    """Revoke a credential by its leaf (hospital token): one this hospital issued, or one of
    a hospital removed from the consortium."""
    from node.client import EmrClient

    with EmrClient(url, token) as client:
        result = _guard(lambda: client.zk.revoke_credential(int(leaf, 0)))
    typer.echo(json.dumps(result, indent=2))


@credential_app.command("revoke-member")
def credential_revoke_member(
    hospital: str, url: Url = "http://127.0.0.1:8700", token: Token = None
) -> None:
    """Revoke every credential of a hospital removed from the consortium (hospital token)."""
    from node.client import EmrClient

    with EmrClient(url, token) as client:
        result = _guard(lambda: client.zk.revoke_member(hospital))
    typer.echo(json.dumps(result, indent=2))


@zk_app.command("read")
def zk_read(
    record_id: str,
    identity_file: Annotated[
        Path, typer.Option("--identity", help="identity file with its issued credential")
    ],
    out: Annotated[Path | None, typer.Option("--out", help="default: stdout")] = None,
    url: Url = "http://127.0.0.1:8700",
    keys_dir: KeysDir = Path("~/.cache/emr-node/zk-client"),
) -> None:
    """Read a record anonymously: build the Merkle proof from the public tree, pick a class
    the patient consented to, prove, open the sealed answer."""
    from node.client import EmrClient
    from node.zkaccess.clinician import ClinicianProver
    from zk.credentials import IssuedCredential

    credential = _guard(lambda: IssuedCredential.load(identity_file))
    prover = ClinicianProver(credential, keys_dir.expanduser())
    with EmrClient(url) as client:
        result = _guard(lambda: prover.read(client, record_id))
    if out is None:
        sys.stdout.buffer.write(result.content)
    else:
        out.write_bytes(result.content)
        typer.echo(
            f"wrote {len(result.content)} bytes to {out} (proved in "
            f"{result.prove_seconds * 1000:.0f} ms; access recorded in tx {result.tx_hash})"
        )


@zk_app.command("readers")
def readers(
    record: str,
    from_time: Annotated[int | None, typer.Option("--from", help="unix time")] = None,
    to_time: Annotated[int | None, typer.Option("--to", help="unix time")] = None,
    url: Url = "http://127.0.0.1:8700",
    token: Annotated[
        str | None, typer.Option("--token", envvar="EMR_TOKEN", help="auditor API token")
    ] = None,
) -> None:
    """Per epoch: anonymous reads of a record and distinct credentials (auditor token)."""
    from node.client import EmrClient

    with EmrClient(url, token) as client:
        result = _guard(lambda: client.zk.readers(record, from_time, to_time))
    typer.echo(json.dumps(result, indent=2))


@zk_app.command("accesses")
def accesses(
    record: Annotated[str | None, typer.Option("--record", help="one record's accesses")] = None,
    url: Url = "http://127.0.0.1:8700",
    token: Annotated[
        str | None, typer.Option("--token", envvar="EMR_TOKEN", help="auditor API token")
    ] = None,
) -> None:
    """Anonymous accesses recorded on-chain by ZkAccessGate (auditor token)."""
    from node.client import EmrClient

    with EmrClient(url, token) as client:
        result = _guard(lambda: client.zk.accesses(record))
    typer.echo(json.dumps(result, indent=2))


# -- ceremony -------------------------------------------------------------------------
@ceremony_app.command("ptau")
def ceremony_ptau(
    out: Path,
    power: Annotated[int, typer.Option(help="2^power constraints at most")] = 13,
) -> None:
    """Local phase 1 for development ONLY (a consortium uses a public powers-of-tau file)."""
    from zk.ceremony import powers_of_tau

    typer.echo(f"wrote {_guard(lambda: powers_of_tau(out, power))}")


@ceremony_app.command("init")
def ceremony_init(
    name: str,
    ptau: Annotated[Path, typer.Option(help="powers-of-tau file (phase 1)")],
    directory: Annotated[Path, typer.Option("--dir", help="the ceremony directory")],
) -> None:
    """Compile the circuit and start its phase-2 ceremony (contribution 0)."""
    from zk import ceremony
    from zk.compiler import compile_circuit

    report = _guard(lambda: compile_circuit(_spec(name)))
    _guard(lambda: ceremony.init(report.r1cs_path, ptau, directory, name=name))
    typer.echo(f"ceremony for {name} started in {directory} ({report.constraints} constraints)")


@ceremony_app.command("contribute")
def ceremony_contribute(
    directory: Annotated[Path, typer.Option("--dir")],
    name: Annotated[str, typer.Option(help="the contributing hospital")],
) -> None:
    """Add this hospital's contribution (fresh OS randomness)."""
    from zk import ceremony

    c = _guard(lambda: ceremony.contribute(directory, name))
    typer.echo(
        f"contribution {c.index} by {c.name}: {c.zkey} (sha256 {c.zkey_sha256})\n"
        f"contribution hash (publish it): {c.contribution_hash}"
    )


@ceremony_app.command("verify")
def ceremony_verify(
    directory: Annotated[Path, typer.Option("--dir")],
    ptau: Annotated[Path | None, typer.Option(help="your copy of the ptau file")] = None,
    latest_only: Annotated[
        bool, typer.Option("--latest-only", help="snarkjs-verify only the latest zkey")
    ] = False,
) -> None:
    """Check every contribution (exit 1 on any problem)."""
    from zk import ceremony

    report = _guard(lambda: ceremony.verify(directory, ptau, all_steps=not latest_only))
    typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    if not report.ok:
        raise typer.Exit(1)


@ceremony_app.command("import")
def ceremony_import(
    name: str,
    directory: Annotated[Path, typer.Option("--dir", help="a finalized ceremony")],
    keys_dir: KeysDir = DEFAULT_KEYS,
) -> None:
    """Import the ceremony's final key for proving and verifying (checks the key pair)."""
    from zk import ceremony
    from zk.setup import import_ceremony

    spec = _spec(name)
    keys = _guard(
        lambda: import_ceremony(
            spec,
            directory / ceremony.FINAL_ZKEY,
            directory / ceremony.VK_FILE,
            keys_dir.expanduser(),
        )
    )
    typer.echo(f"ceremony keys for {name} in {keys.directory}")


@ceremony_app.command("finalize")
def ceremony_finalize(
    directory: Annotated[Path, typer.Option("--dir")],
    beacon: Annotated[str, typer.Option(help="public random beacon, hex")],
) -> None:
    """Apply the beacon; write the final zkey and verification key for the nodes."""
    from zk import ceremony

    result = _guard(lambda: ceremony.finalize(directory, beacon))
    typer.echo(
        f"final zkey {result.zkey} (sha256 {result.zkey_sha256})\n"
        f"verification key {result.verification_key}\n"
        "nodes: EMR_ZK__KEYS=ceremony EMR_ZK__CEREMONY_ZKEY=<zkey> EMR_ZK__CEREMONY_VK=<vk>"
    )
