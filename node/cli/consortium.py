"""``emr-node consortium ...``: the consortium's Besu QBFT network kit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

consortium_app = typer.Typer(
    help="The consortium's chain: a Hyperledger Besu QBFT network kit.", no_args_is_help=True
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _fund(values: list[str]) -> dict[str, int]:
    alloc: dict[str, int] = {}
    for value in values:
        address, sep, wei = value.partition("=")
        if not sep:
            _fail(f"--fund wants ADDRESS=WEI, got {value!r}")
        try:
            alloc[address.strip()] = alloc.get(address.strip(), 0) + int(wei, 0)
        except ValueError:
            _fail(f"--fund: not an amount of wei: {wei!r}")
    return alloc


@consortium_app.command("genesis")
def genesis(
    out: Annotated[Path, typer.Option("--out", help="new (or empty) directory for the kit")],
    chain_id: Annotated[int, typer.Option("--chain-id", help="the network's chain id")],
    hospitals_file: Annotated[
        Path | None,
        typer.Option(
            "--hospitals",
            help="JSON or TOML file: a 'hospitals' list of {name, host, p2p_port, rpc_host, "
            "rpc_port, node_public_key | enode, validator, account, fund_wei}",
        ),
    ] = None,
    hospital: Annotated[
        list[str] | None,
        typer.Option(
            "--hospital",
            help="NAME=enode://<pubkey>@HOST:PORT, or NAME=HOST[:PORT] with --generate-keys "
            "(repeat; added after the file's hospitals)",
        ),
    ] = None,
    block_period: Annotated[int, typer.Option("--block-period", help="blockperiodseconds")] = 2,
    epoch: Annotated[int, typer.Option("--epoch", help="epochlength (blocks)")] = 30000,
    request_timeout: Annotated[
        int | None,
        typer.Option("--request-timeout", help="requesttimeoutseconds (default 2 x period)"),
    ] = None,
    zero_gas: Annotated[
        bool,
        typer.Option(
            "--zero-gas/--priced-gas",
            help="free gas (zeroBaseFee, min-gas-price 0) or gas paid by funded accounts",
        ),
    ] = True,
    fund: Annotated[
        list[str] | None,
        typer.Option("--fund", help="ADDRESS=WEI in the genesis alloc (repeat)"),
    ] = None,
    network: Annotated[
        str, typer.Option("--network", help="names the emr-nodes' deployment manifest")
    ] = "consortium",
    generate_keys: Annotated[
        bool,
        typer.Option(
            "--generate-keys",
            help="create node keys here for hospitals without a public key (key files 0600; "
            "move them to the validators and delete the copies)",
        ),
    ] = False,
    install_dir: Annotated[
        str, typer.Option("--install-dir", help="where config files live on the validators")
    ] = "/etc/besu",
    data_path: Annotated[
        str, typer.Option("--data-path", help="Besu's data directory on the validators")
    ] = "/var/lib/besu",
) -> None:
    """Write a Besu QBFT genesis (validators = the hospitals' node-key addresses), each
    hospital's Besu config (static nodes, local allowlists, private JSON-RPC) and START.md."""
    from node.consortium.besu import Hospital, hospital_from_option, load_hospitals, write_kit
    from node.consortium.genesis import QbftOptions

    hospitals: list[Hospital] = []
    try:
        if hospitals_file is not None:
            hospitals += load_hospitals(hospitals_file)
        hospitals += [hospital_from_option(v) for v in hospital or []]
        if not hospitals:
            _fail("name the hospitals with --hospitals FILE or --hospital (repeat)")
        options = QbftOptions(
            chain_id=chain_id,
            block_period=block_period,
            epoch=epoch,
            request_timeout=request_timeout,
            zero_gas=zero_gas,
            alloc=_fund(fund or []),
        )
        kit = write_kit(
            out,
            hospitals,
            options,
            network=network,
            generate_keys=generate_keys,
            install_dir=install_dir,
            data_path=data_path,
        )
    except (ValueError, OSError) as err:
        _fail(str(err))
    for warning in kit.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {len(kit.files)} files to {kit.out_dir}; next: {kit.out_dir}/START.md")
