"""`hexchange-certs`: run the network CA from the command line.

Every command takes ``--ca-dir PATH`` (or the ``HEXCHANGE_CA_DIR`` environment variable).
User errors print one clear line on stderr and exit non-zero; machine output (the token)
is the only thing written to stdout by `token`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from certs.errors import CertsError
from certs.identity import is_valid_name
from certs.journal import write_file_atomic
from certs.registry import CADirectory
from certs.tokens import issue_token

app = typer.Typer(
    name="hexchange-certs",
    help="Hexchange network CA: enrollment tokens, site certificates, revocation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CADir = Annotated[
    Path,
    typer.Option(
        "--ca-dir",
        envvar="HEXCHANGE_CA_DIR",
        help="CA state directory (env HEXCHANGE_CA_DIR).",
        file_okay=False,
    ),
]

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _fail(message: str) -> typer.Exit:
    _stderr().print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code=1)


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '1h', '7d' or combinations like '1h30m'."""
    text = text.strip().lower()
    if not text or _DURATION.sub("", text):
        raise ValueError(f"invalid duration {text!r}; use e.g. 30m, 1h, 2d")
    total = timedelta()
    for amount, unit in _DURATION.findall(text):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    if total <= timedelta():
        raise ValueError("duration must be positive")
    return total


def parse_serial(text: str) -> int:
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        return int(cleaned, 16)
    except ValueError:
        raise ValueError(f"invalid serial {text!r}; give it in hex as shown by `list`") from None


@app.command()
def init(
    ca_dir: CADir,
    name: Annotated[str, typer.Option("--name", help="CA common name.")] = "Hexchange Network CA",
) -> None:
    """Create a new network CA in --ca-dir (refuses to overwrite an existing one)."""
    try:
        ca = CADirectory(ca_dir).init(name)
    except CertsError as exc:
        raise _fail(str(exc)) from None
    err = _stderr()
    err.print(f"Created CA {name!r} in {ca_dir}")
    not_after = ca.certificate.not_valid_after_utc
    err.print(f"CA certificate: {ca_dir / 'ca.pem'} (valid until {not_after:%Y-%m-%d})")
    err.print("Keep ca.key private; it never needs to leave this host.")


@app.command()
def token(
    ca_dir: CADir,
    org: Annotated[str, typer.Option("--org", help="Organisation name.")],
    site: Annotated[str, typer.Option("--site", help="Site name.")],
    ttl: Annotated[str, typer.Option("--ttl", help="Validity, e.g. 30m, 1h, 2d.")] = "1h",
) -> None:
    """Issue a one-time enrollment token for org/site (printed alone on stdout)."""
    for label, value in (("org", org), ("site", site)):
        if not is_valid_name(value):
            raise _fail(
                f"invalid {label} {value!r}: use lower-case letters, digits and '-' (max 63)"
            )
    try:
        lifetime = parse_duration(ttl)
        ca = CADirectory(ca_dir).load()
    except (CertsError, ValueError) as exc:
        raise _fail(str(exc)) from None
    value = issue_token(ca, org=org, site=site, ttl=lifetime)
    expires = datetime.now(UTC) + lifetime
    _stderr().print(
        f"Enrollment token for {org}/{site}, single use, expires {expires:%Y-%m-%d %H:%M} UTC. "
        "Give it to the site over a trusted channel."
    )
    typer.echo(value)


@app.command("list")
def list_(ca_dir: CADir) -> None:
    """List issued site certificates."""
    try:
        directory = CADirectory(ca_dir)
        directory.load()  # a clear "run init" error if there is no CA here
        records = directory.list_issued()
    except CertsError as exc:
        raise _fail(str(exc)) from None
    now = datetime.now(UTC)
    table = Table(title=f"Certificates issued by {ca_dir}")
    for column in ("Serial", "Org", "Site", "Not after", "Status"):
        table.add_column(column, no_wrap=column == "Serial")
    for record in sorted(records, key=lambda r: (r.org, r.site, r.not_before)):
        if record.revoked:
            status = "[red]revoked[/]"
        elif record.not_after <= now:
            status = "[dim]expired[/]"
        else:
            status = "[green]valid[/]"
        table.add_row(
            format(record.serial, "x"),
            record.org,
            record.site,
            f"{record.not_after:%Y-%m-%d %H:%M}",
            status,
        )
    Console(width=200).print(table)


@app.command()
def revoke(
    ca_dir: CADir,
    serial: Annotated[str, typer.Argument(help="Serial in hex, as shown by `list`.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is revoked.")] = "unspecified",
) -> None:
    """Revoke a site certificate; the hub refuses it at once."""
    try:
        number = parse_serial(serial)
        directory = CADirectory(ca_dir)
        directory.load()
        directory.revoke(number, reason)
    except (CertsError, ValueError) as exc:
        raise _fail(str(exc)) from None
    _stderr().print(f"Revoked {number:x} ({reason}).")


@app.command("server-cert")
def server_cert(
    ca_dir: CADir,
    out_dir: Annotated[
        Path, typer.Option("--out-dir", file_okay=False, help="Where to write hub.pem and hub.key.")
    ],
    host: Annotated[list[str] | None, typer.Option("--host", help="DNS name (repeatable).")] = None,
    ip: Annotated[list[str] | None, typer.Option("--ip", help="IP address (repeatable).")] = None,
) -> None:
    """Issue the hub's TLS server certificate (hub.pem, hub.key 0600)."""
    hosts, ips = host or [], ip or []
    if not hosts and not ips:
        raise _fail("give at least one --host or --ip")
    try:
        cert_pem, key_pem = CADirectory(ca_dir).server_certificate(hosts, ips)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_file_atomic(out_dir / "hub.key.tmp", out_dir / "hub.key", key_pem, mode=0o600)
        write_file_atomic(out_dir / "hub.pem.tmp", out_dir / "hub.pem", cert_pem, mode=0o644)
    except (CertsError, OSError) as exc:
        raise _fail(str(exc)) from None
    _stderr().print(f"Wrote {out_dir / 'hub.pem'} and {out_dir / 'hub.key'} (0600).")


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
