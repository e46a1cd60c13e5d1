"""The ``emr-node`` command. Thin: it parses arguments and calls the node or its API."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from node.settings import Settings

app = typer.Typer(help="emr-node: a hospital's node of an EMR blockchain.", no_args_is_help=True)
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="default: $EMR_DATA_DIR or ~/.emr-node")
]
Url = Annotated[str, typer.Option("--url", envvar="EMR_URL", help="the node's API URL")]


def _settings(data_dir: Path | None) -> Settings:
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as err:  # e.g. production mode without EMR_API__PUBLIC_URL
        _fail(f"invalid settings: {err}")
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _build(settings: Settings):  # type: ignore[no-untyped-def]
    from hsm.exceptions import HSMError
    from node.chain.exceptions import ChainError
    from node.exceptions import NodeError
    from node.wiring import build_node
    from storage.exceptions import StorageError

    try:
        return build_node(settings)
    except (HSMError, ChainError, StorageError, NodeError, OSError, ValueError) as err:
        _fail(f"cannot start the node: {err}")


def _serve_api(settings: Settings, processes: int) -> None:
    """API processes under uvicorn's process manager (it restarts a process that dies)."""
    import uvicorn

    from node.api.server import process_server_options

    api = settings.api
    # proxy_headers off: X-Forwarded-For is believed only from throttle.trusted_proxies.
    uvicorn.run(
        "node.api.asgi:create_api_app",
        factory=True,
        workers=processes,
        host=api.host,
        port=api.port,
        log_level="warning",
        log_config=None,  # logging is the node's (EMR_LOG__FORMAT), uvicorn's loggers propagate
        proxy_headers=False,
        timeout_graceful_shutdown=30,
        **process_server_options(api, processes),  # bounded heads; processes take turns
    )


def _api_processes(settings: Settings, processes: int | None) -> int:
    n = processes if processes is not None else settings.api.processes
    return n or os.cpu_count() or 1


def _log_setup(settings: Settings | None = None) -> None:
    """Logs on stderr as EMR_LOG__FORMAT says (json, the default, or text)."""
    from node.observability.logging import configure_logging

    if settings is None:
        settings = _settings(None)
    configure_logging(settings.log.format, settings.log.level)


def _metrics_dir(settings: Settings) -> None:
    """One PROMETHEUS_MULTIPROC_DIR for the worker role and every API process (their
    series are summed at /metrics), emptied at start; kept when the operator set one."""
    from node.observability.metrics import clean_multiprocess_dir

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(settings.resolved_data_dir / "metrics")
    clean_multiprocess_dir(path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


Processes = Annotated[
    int | None,
    typer.Option(
        "--processes", help="API processes (default: EMR_API__PROCESSES, or one per CPU core)"
    ),
]
Host = Annotated[str | None, typer.Option(help="default 127.0.0.1")]
Port = Annotated[int | None, typer.Option(help="default 8700")]


def _with_api(settings: Settings, host: str | None, port: int | None) -> Settings:
    api = settings.api.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    return settings.model_copy(update={"api": api})


@app.command()
def run(
    data_dir: DataDir = None,
    host: Host = None,
    port: Port = None,
    processes: Processes = None,
    single_process: Annotated[
        bool,
        typer.Option("--single-process", help="routes and background workers in this one process"),
    ] = False,
) -> None:
    """Start the node (embedded default: no external services): the worker role and N API
    processes serving the HTTP API."""
    settings = _with_api(_settings(data_dir), host, port)
    _log_setup(settings)
    api = settings.api
    url = f"http://{api.host}:{api.port}"
    if single_process:
        _run_single(settings, url)
        return
    from node.roles.supervisor import WorkerSupervisor, free_port, process_env

    n = _api_processes(settings, processes)
    if "EMR_WORKER__PORT" not in os.environ:  # a free loopback port: nothing to configure
        worker = settings.worker.model_copy(update={"port": free_port(settings.worker.host)})
        settings = settings.model_copy(update={"worker": worker})
    env = process_env(
        {
            "EMR_DATA_DIR": settings.resolved_data_dir,
            "EMR_API__HOST": api.host,
            "EMR_API__PORT": api.port,
            "EMR_WORKER__PORT": settings.worker.port,
        }
    )
    if settings.metrics.enabled:
        _metrics_dir(settings)  # before the worker starts: it and the API processes share it
        env["PROMETHEUS_MULTIPROC_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.environ.update(env)  # uvicorn's API processes inherit it
    supervisor = WorkerSupervisor(env, settings.worker.resolved_url)
    # The first start deploys contracts and makes keys (a minute or two on a slow machine).
    if not supervisor.start(ready_timeout=600):
        supervisor.stop()
        _fail("the worker role did not start (see its output above)")
    typer.echo(f"emr-node data in {settings.resolved_data_dir}; worker pid {supervisor.pid}")
    typer.echo(f"emr-node API: {url}  (OpenAPI docs: {url}/docs), {n} API processes")
    typer.echo(f"admin token: {settings.resolved_data_dir / 'admin-token'}")
    try:
        _serve_api(settings, n)
    finally:
        supervisor.stop()


def _run_single(settings: Settings, url: str) -> None:
    import uvicorn

    from node.api.app import create_app
    from node.api.server import server_options

    node = _build(settings)
    for note in node.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"emr-node {node.hospital} data in {settings.resolved_data_dir}")
    typer.echo(f"emr-node API: {url}  (OpenAPI docs: {url}/docs), one process")
    typer.echo(f"admin token: {settings.resolved_data_dir / 'admin-token'}")
    uvicorn.run(
        create_app(node),
        host=settings.api.host,
        port=settings.api.port,
        log_level="warning",
        log_config=None,  # logging is the node's (EMR_LOG__FORMAT), uvicorn's loggers propagate
        proxy_headers=False,
        **server_options(settings.api),
    )


@app.command()
def worker(data_dir: DataDir = None) -> None:
    """Run the worker role alone: background workers, transaction sender, embedded chain.
    Waits for the hospital's lease when another worker holds it (a standby)."""
    from hsm.exceptions import HSMError
    from node.chain.exceptions import ChainError
    from node.exceptions import NodeError
    from node.roles.worker import run_worker
    from storage.exceptions import StorageError

    settings = _settings(data_dir)
    _log_setup(settings)
    try:
        code = run_worker(settings, announce=typer.echo)
    except (HSMError, ChainError, StorageError, NodeError, OSError, ValueError) as err:
        _fail(f"cannot start the worker role: {err}")
    raise typer.Exit(code)


@app.command()
def api(
    data_dir: DataDir = None, host: Host = None, port: Port = None, processes: Processes = None
) -> None:
    """Run API processes only, against a worker role started separately (same data dir or
    the same shared database and key store)."""
    settings = _with_api(_settings(data_dir), host, port)
    _log_setup(settings)
    os.environ.update(
        {
            "EMR_DATA_DIR": str(settings.resolved_data_dir),
            "EMR_API__HOST": settings.api.host,
            "EMR_API__PORT": str(settings.api.port),
        }
    )
    _serve_api(settings, _api_processes(settings, processes))


@app.command()
def init(data_dir: DataDir = None) -> None:
    """Create the data directory, key store and embedded chain, then exit."""
    settings = _settings(data_dir)
    node = _build(settings)
    for note in node.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"hospital address {node.hospital}; contracts {node.chain.deployment.to_json()}")
    node.stop()


class _TokenGroup(TyperGroup):
    """``emr-node token ROLE [--name ...]``, the original form, still creates a token."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] != "--help":
            args = ["create", *args]
        return super().parse_args(ctx, args)


token_app = typer.Typer(
    cls=_TokenGroup,
    help="API tokens through a running node: create (also `emr-node token ROLE`), list, "
    "revoke (admin token).",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")
AdminToken = Annotated[
    str | None,
    typer.Option("--token", "--admin-token", envvar="EMR_ADMIN_TOKEN", help="admin API token"),
]


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Argument(help="hospital, auditor or admin")],
    name: Annotated[str, typer.Option(help="what the token is for")] = "cli",
    expires_in: Annotated[
        int | None,
        typer.Option(help="seconds until it expires (default: the node's api.token_ttl_days)"),
    ] = None,
    url: Url = "http://127.0.0.1:8700",
    admin_token: AdminToken = None,
    data_dir: DataDir = None,
) -> None:
    """Create an API token (prints it once; `token list` shows its id and expiry)."""
    from node.client import ApiError, EmrClient

    admin = admin_token or _read_admin_token(data_dir)
    try:
        with EmrClient(url, admin) as client:
            typer.echo(client.create_token(name, role, expires_in=expires_in))
    except ApiError as err:
        _fail(str(err))


@token_app.command("list")
def token_list(
    url: Url = "http://127.0.0.1:8700", admin_token: AdminToken = None, data_dir: DataDir = None
) -> None:
    """List API tokens (id, name, role, created, expires, revoked, live); never the tokens."""
    from node.client import EmrClient

    with EmrClient(url, admin_token or _read_admin_token(data_dir)) as client:
        _print_json(client.tokens)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="the token's id (from `token list`)")],
    force: Annotated[bool, typer.Option(help="revoke even the last live admin token")] = False,
    url: Url = "http://127.0.0.1:8700",
    admin_token: AdminToken = None,
    data_dir: DataDir = None,
) -> None:
    """Revoke an API token: every API process refuses it within api.auth_cache_ttl seconds."""
    from node.client import EmrClient

    with EmrClient(url, admin_token or _read_admin_token(data_dir)) as client:
        _print_json(lambda: client.revoke_token(token_id, force=force))


def _read_admin_token(data_dir: Path | None) -> str:
    path = _settings(data_dir).resolved_data_dir / "admin-token"
    if not path.exists():
        _fail(f"no admin token at {path}: pass --admin-token or set EMR_ADMIN_TOKEN")
    return path.read_text().strip()


@app.command()
def demo(
    url: Url = "http://127.0.0.1:8700",
    admin_token: Annotated[str | None, typer.Option(envvar="EMR_ADMIN_TOKEN")] = None,
    data_dir: DataDir = None,
) -> None:
    """Drive the five flows (upload, consent, read, audit, integrity) against a running node."""
    import httpx

    from node.client import ApiError
    from node.demo import run_demo

    try:
        run_demo(url, admin_token or _read_admin_token(data_dir))
    except (ApiError, httpx.HTTPError, TimeoutError) as err:
        _fail(f"demo failed: {err}")


@app.command()
def upload(
    patient: Annotated[str, typer.Argument(help="the patient's wallet address")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    category: Annotated[str, typer.Option()] = "note",
    content_type: Annotated[str, typer.Option()] = "application/octet-stream",
    url: Url = "http://127.0.0.1:8700",
    token: Annotated[
        str | None, typer.Option(envvar="EMR_TOKEN", help="hospital API token")
    ] = None,
) -> None:
    """Upload a record for a patient (needs a hospital token)."""
    import json

    from node.client import ApiError, EmrClient

    try:
        with EmrClient(url, token) as client:
            typer.echo(
                json.dumps(
                    client.upload(
                        patient, file.read_bytes(), category=category, content_type=content_type
                    ),
                    indent=2,
                )
            )
    except ApiError as err:
        _fail(str(err))


@app.command()
def receipt(
    record_id: str,
    url: Url = "http://127.0.0.1:8700",
    token: Annotated[str | None, typer.Option(envvar="EMR_TOKEN")] = None,
) -> None:
    """Show a record's anchoring receipt (tx hash, root, Merkle proof)."""
    import json

    from node.client import ApiError, EmrClient

    try:
        with EmrClient(url, token) as client:
            typer.echo(json.dumps(client.receipt(record_id), indent=2))
    except ApiError as err:
        _fail(str(err))


@app.command()
def erase(
    record_id: Annotated[str | None, typer.Argument(help="the record to erase")] = None,
    patient: Annotated[
        str | None, typer.Option(help="erase every record of this patient instead")
    ] = None,
    reason: Annotated[str, typer.Option(help="why (only its hash goes on-chain)")] = "",
    url: Url = "http://127.0.0.1:8700",
    token: Annotated[
        str | None, typer.Option(envvar="EMR_TOKEN", help="hospital API token")
    ] = None,
) -> None:
    """Erase (GDPR art. 17): destroy the data key, purge the blob, anchor a tombstone."""
    import json

    from node.client import ApiError, EmrClient

    if (record_id is None) == (patient is None):
        _fail("give either RECORD_ID or --patient ADDRESS")
    if not reason.strip():
        _fail("--reason is mandatory")
    try:
        with EmrClient(url, token) as client:
            if patient is not None:
                result = client.erase_patient(patient, reason)
            else:
                result = client.erase(str(record_id), reason)
            typer.echo(json.dumps(result, indent=2))
    except ApiError as err:
        _fail(str(err))


audit_app = typer.Typer(help="The on-chain audit trail (auditor token).", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
AuditorToken = Annotated[
    str | None, typer.Option("--token", envvar="EMR_TOKEN", help="auditor API token")
]


def _print_json(call: Any) -> None:
    import json

    from node.client import ApiError

    try:
        typer.echo(json.dumps(call(), indent=2))
    except ApiError as err:
        _fail(str(err))


@audit_app.command("events")
def audit_events(
    patient: Annotated[str | None, typer.Option()] = None,
    record_id: Annotated[str | None, typer.Option("--record")] = None,
    actor: Annotated[str | None, typer.Option()] = None,
    since: Annotated[int | None, typer.Option(help="unix seconds")] = None,
    until: Annotated[int | None, typer.Option(help="unix seconds")] = None,
    mirror: Annotated[bool, typer.Option(help="read the SQL mirror instead of the chain")] = False,
    url: Url = "http://127.0.0.1:8700",
    token: AuditorToken = None,
) -> None:
    """List audit events by patient, record, actor and time."""
    from node.client import EmrClient

    with EmrClient(url, token) as client:
        _print_json(
            lambda: client.audit_events(
                patient=patient,
                record_id=record_id,
                actor=actor,
                since=since,
                until=until,
                source="mirror" if mirror else None,
            )
        )


@audit_app.command("record")
def audit_record(
    record_id: str,
    content_hash: Annotated[
        str | None, typer.Option(help="0x sha256 of the content to check")
    ] = None,
    url: Url = "http://127.0.0.1:8700",
    token: AuditorToken = None,
) -> None:
    """Verify a record's content hash against its anchored Merkle root."""
    from node.client import EmrClient

    with EmrClient(url, token) as client:
        _print_json(lambda: client.verify(record_id, content_hash))


@audit_app.command("verify")
def audit_verify(url: Url = "http://127.0.0.1:8700", token: AuditorToken = None) -> None:
    """Check the SQL audit mirror against the chain, event by event (exit 1 if they differ)."""
    from node.client import ApiError, EmrClient

    with EmrClient(url, token) as client:
        try:
            report = client.verify_mirror()
        except ApiError as err:
            _fail(str(err))
    import json

    typer.echo(json.dumps(report, indent=2))
    if not report["consistent"]:
        raise typer.Exit(1)


@audit_app.command("verify-receipt")
def audit_verify_receipt(
    file: Annotated[Path, typer.Argument(help="a receipt (JSON) as `emr-node` or the API gave it")],
    url: Url = "http://127.0.0.1:8700",
    token: AuditorToken = None,
) -> None:
    """Check any member hospital's anchoring receipt against the chain (exit 1 if invalid)."""
    import json

    from node.client import ApiError, EmrClient

    try:
        receipt = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        _fail(f"{file}: not a JSON receipt ({err})")
    with EmrClient(url, token) as client:
        try:
            report = client.verify_receipt(receipt)
        except ApiError as err:
            _fail(str(err))
    typer.echo(json.dumps(report, indent=2))
    if not report["valid"]:
        raise typer.Exit(1)


keys_app = typer.Typer(
    help="Master keys (KEKs) and the signing key: rotation and its progress (admin token).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


@keys_app.command("rotate")
def keys_rotate(
    url: Url = "http://127.0.0.1:8700", token: AdminToken = None, data_dir: DataDir = None
) -> None:
    """Create a new KEK version for new records; the node re-wraps existing data keys in the
    background and destroys the old KEK once nothing refers to it."""
    from node.client import EmrClient

    with EmrClient(url, token or _read_admin_token(data_dir)) as client:
        _print_json(lambda: {"version": client.rotate_keys()})


@keys_app.command("rotate-signer")
def keys_rotate_signer(
    url: Url = "http://127.0.0.1:8700", token: AdminToken = None, data_dir: DataDir = None
) -> None:
    """Create a new signing key and propose moving the hospital's Consortium membership to
    it; with a majority (at once in a one-member consortium) the node switches to the new key
    and destroys the old one, otherwise it does so once the other members have voted."""
    from node.client import EmrClient

    with EmrClient(url, token or _read_admin_token(data_dir)) as client:
        _print_json(client.rotate_signer)


@keys_app.command("status")
def keys_status(
    url: Url = "http://127.0.0.1:8700", token: AdminToken = None, data_dir: DataDir = None
) -> None:
    """Show the current KEK version, records per version, the re-wrap backlog and retired
    versions."""
    from node.client import EmrClient

    with EmrClient(url, token or _read_admin_token(data_dir)) as client:
        _print_json(client.key_status)


db_app = typer.Typer(help="The record index database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def db_migrate(data_dir: DataDir = None) -> None:
    """Apply pending schema migrations to the configured index (MySQL or SQLite)."""
    from node.wiring import open_record_index
    from storage.exceptions import StorageError

    settings = _settings(data_dir)
    try:
        index = open_record_index(settings)
    except (StorageError, ValueError) as err:
        _fail(f"cannot open the index: {err}")
    typer.echo(f"{type(index).__name__}: schema version {index.schema_version}")
    index.close()


storage_app = typer.Typer(help="Blob storage maintenance.", no_args_is_help=True)
app.add_typer(storage_app, name="storage")


@storage_app.command("repair")
def storage_repair(data_dir: DataDir = None) -> None:
    """Re-pin every indexed blob whose replication fell below the minimum (IPFS)."""
    from node.flows.repair_blobs import repair_replicas
    from node.wiring import open_blob_store, open_record_index
    from storage.abc import ReplicaRepairAPI
    from storage.exceptions import StorageError

    settings = _settings(data_dir)

    def progress(done: int, total: int) -> None:
        typer.echo(f"\rchecked {done}/{total}", nl=False)

    blobs = open_blob_store(settings)
    try:
        if not isinstance(blobs, ReplicaRepairAPI):
            _fail(f"the {settings.storage.blob_backend} blob store keeps no replicas to repair")
        index = open_record_index(settings)
        try:
            report = repair_replicas(index=index, blobs=blobs, progress=progress)
        finally:
            index.close()
    except (StorageError, ValueError) as err:
        _fail(str(err))
    finally:
        blobs.close()
    typer.echo(
        f"\nchecked {report.checked}: {report.healthy} healthy, {report.repaired} repaired, "
        f"{report.degraded} still below the minimum, {report.unrecoverable} unrecoverable"
    )
    if report.degraded or report.unrecoverable:
        raise typer.Exit(1)


consent_app = typer.Typer(
    help="Patient consent, signed with a wallet key (EIP-712).", no_args_is_help=True
)
app.add_typer(consent_app, name="consent")
KeyEnv = Annotated[
    str,
    typer.Option(
        "--key-env", help="name of the environment variable holding the wallet's private key"
    ),
]


def _wallet(key_env: str):  # type: ignore[no-untyped-def]
    from eth_account import Account

    key = os.environ.get(key_env)
    if not key:
        _fail(f"set {key_env} to the wallet's private key (keys are never taken from arguments)")
    try:
        return Account.from_key(key)
    except (ValueError, TypeError):
        _fail(f"{key_env} does not hold a valid private key")


def _scope(record: str | None, category: str | None):  # type: ignore[no-untyped-def]
    from node.client import Scope

    if record and category:
        _fail("give --record or --category, not both (neither: all records)")
    if record:
        return Scope.record(record)
    return Scope.category(category) if category else Scope.all()


def _consent(
    kind: str,
    grantee: str,
    record: str | None,
    category: str | None,
    days: float,
    url: str,
    key_env: str,
) -> None:
    import json

    from node.client import ApiError, EmrClient

    patient = _wallet(key_env)
    try:
        with EmrClient(url) as client:
            if kind == "grant":
                result = client.grant(
                    patient, grantee, _scope(record, category), expires_in=int(days * 86400)
                )
            else:
                result = client.revoke(patient, grantee, _scope(record, category))
            typer.echo(json.dumps(result, indent=2))
    except ApiError as err:
        _fail(str(err))


@consent_app.command("grant")
def consent_grant(
    grantee: Annotated[str, typer.Argument(help="clinician or hospital address")],
    record: Annotated[str | None, typer.Option(help="one record id")] = None,
    category: Annotated[str | None, typer.Option(help="a category, e.g. lab")] = None,
    days: Annotated[float, typer.Option(help="how long the consent lasts")] = 30.0,
    url: Url = "http://127.0.0.1:8700",
    key_env: KeyEnv = "EMR_WALLET_KEY",
) -> None:
    """Grant access (to one record, a category, or all records) and have the node relay it."""
    _consent("grant", grantee, record, category, days, url, key_env)


@consent_app.command("revoke")
def consent_revoke(
    grantee: Annotated[str, typer.Argument(help="clinician or hospital address")],
    record: Annotated[str | None, typer.Option(help="one record id")] = None,
    category: Annotated[str | None, typer.Option(help="a category, e.g. lab")] = None,
    url: Url = "http://127.0.0.1:8700",
    key_env: KeyEnv = "EMR_WALLET_KEY",
) -> None:
    """Revoke a consent; it takes effect in the next block."""
    _consent("revoke", grantee, record, category, 0, url, key_env)


def _class_consent(
    kind: str,
    roles: str,
    hospital: int,
    record: str | None,
    category: str | None,
    days: float,
    url: str,
    key_env: str,
) -> None:
    import json

    from node.client import ApiError, EmrClient
    from zk.exceptions import InputError

    patient = _wallet(key_env)
    wanted = [r.strip() for r in roles.split(",") if r.strip()]
    try:
        with EmrClient(url) as client:
            scope = _scope(record, category)
            if kind == "grant":
                result = client.grant_class(
                    patient, wanted, scope, hospital=hospital, expires_in=int(days * 86400)
                )
            else:
                result = client.revoke_class(patient, wanted, scope, hospital=hospital)
            typer.echo(json.dumps(result, indent=2))
    except (ApiError, InputError) as err:
        _fail(str(err))


ClassRoles = Annotated[
    str, typer.Option("--roles", help="comma-separated clinician roles, e.g. physician,nurse")
]
ClassHospital = Annotated[
    int, typer.Option("--hospital", help="member hospital id (0: any member hospital)")
]


@consent_app.command("grant-class")
def consent_grant_class(
    roles: ClassRoles,
    hospital: ClassHospital = 0,
    record: Annotated[str | None, typer.Option(help="one record id")] = None,
    category: Annotated[str | None, typer.Option(help="a category, e.g. lab")] = None,
    days: Annotated[float, typer.Option(help="how long the consent lasts")] = 30.0,
    url: Url = "http://127.0.0.1:8700",
    key_env: KeyEnv = "EMR_WALLET_KEY",
) -> None:
    """Let a class of readers (roles at a member hospital, or any) read anonymously."""
    _class_consent("grant", roles, hospital, record, category, days, url, key_env)


@consent_app.command("revoke-class")
def consent_revoke_class(
    roles: ClassRoles,
    hospital: ClassHospital = 0,
    record: Annotated[str | None, typer.Option(help="one record id")] = None,
    category: Annotated[str | None, typer.Option(help="a category, e.g. lab")] = None,
    url: Url = "http://127.0.0.1:8700",
    key_env: KeyEnv = "EMR_WALLET_KEY",
) -> None:
    """Revoke a reader-class consent; the next anonymous read under it is refused."""
    _class_consent("revoke", roles, hospital, record, category, 0, url, key_env)


governance_app = typer.Typer(
    help="Consortium proposals: show one, vote as this hospital.", no_args_is_help=True
)
app.add_typer(governance_app, name="governance")
HospitalToken = Annotated[
    str | None, typer.Option("--token", envvar="EMR_TOKEN", help="hospital API token")
]


@governance_app.command("show")
def governance_show(proposal_id: int, url: Url = "http://127.0.0.1:8700") -> None:
    """A proposal: kind, call, votes and state."""
    from node.client import EmrClient

    with EmrClient(url) as client:
        _print_json(lambda: client.governance.proposal(proposal_id))


@governance_app.command("vote")
def governance_vote(
    proposal_id: int, url: Url = "http://127.0.0.1:8700", token: HospitalToken = None
) -> None:
    """Vote for a proposal as this node's hospital (hospital token)."""
    from node.client import EmrClient

    with EmrClient(url, token) as client:
        _print_json(lambda: client.governance.vote(proposal_id))


@governance_app.command("propose")
def governance_propose(
    kind: Annotated[str, typer.Argument(help="admit | remove")],
    subject: Annotated[str, typer.Argument(help="the hospital's node address")],
    name: Annotated[str | None, typer.Option(help="admit: the hospital's name")] = None,
    url: Url = "http://127.0.0.1:8700",
    token: HospitalToken = None,
) -> None:
    """Propose to admit or remove a hospital, with this hospital's vote (hospital token)."""
    from node.client import EmrClient

    with EmrClient(url, token) as client:
        _print_json(lambda: client.governance.propose(kind, subject, name))


wallet_app = typer.Typer(
    help="Patients' recoverable wallets (guardians, recovery delay).", no_args_is_help=True
)
app.add_typer(wallet_app, name="wallet")


@wallet_app.command("create")
def wallet_create(
    owner: Annotated[str, typer.Argument(help="the patient's key address (signs for the wallet)")],
    guardians: Annotated[
        str, typer.Option("--guardians", help="comma-separated guardian addresses (1 to 8)")
    ],
    threshold: Annotated[int, typer.Option(help="approvals a new owner needs")] = 2,
    delay: Annotated[
        int, typer.Option(help="seconds before a recovery takes effect (cancel window)")
    ] = 172_800,
    url: Url = "http://127.0.0.1:8700",
    token: HospitalToken = None,
) -> None:
    """Create a patient's recoverable wallet (hospital token; the node pays)."""
    from node.client import EmrClient

    wanted = [g.strip() for g in guardians.split(",") if g.strip()]
    with EmrClient(url, token) as client:
        _print_json(lambda: client.wallets.create(owner, wanted, threshold, delay))


@wallet_app.command("show")
def wallet_show(
    address: Annotated[str, typer.Argument(help="the wallet's address")],
    url: Url = "http://127.0.0.1:8700",
) -> None:
    """A wallet: owner, guardians, threshold, delay and any pending recovery."""
    from node.client import EmrClient

    with EmrClient(url) as client:
        _print_json(lambda: client.wallets.show(address))


@app.command()
def read(
    record_id: str,
    out: Annotated[
        Path | None, typer.Option("--out", help="write the content here (default: stdout)")
    ] = None,
    url: Url = "http://127.0.0.1:8700",
    key_env: KeyEnv = "EMR_WALLET_KEY",
) -> None:
    """Sign in with a wallet (SIWE) and read a record the wallet may see."""
    from node.client import ApiError, EmrClient

    wallet = _wallet(key_env)
    try:
        with EmrClient(url) as client:
            response = client.read(record_id, client.login(wallet))
    except ApiError as err:
        _fail(str(err))
    if out is None:
        sys.stdout.buffer.write(response.content)
    else:
        out.write_bytes(response.content)
        typer.echo(
            f"wrote {len(response.content)} bytes to {out}"
            f" (basis: {response.headers['x-access-basis']})"
        )


def _register_zk() -> None:
    from node.cli.zk import zk_app

    app.add_typer(zk_app, name="zk")


_register_zk()


def _register_consortium() -> None:
    from node.cli.consortium import consortium_app

    app.add_typer(consortium_app, name="consortium")


_register_consortium()


def _register_backup() -> None:
    from node.cli.backup import register

    register(app)


_register_backup()


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
