"""``dermaguard web``: the subcommand (its parser and its handler), kept with the dashboard."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Final, TextIO

from dermaguard.config.load import Config, load_config, with_overrides
from dermaguard.ui.cli_common import broker_address, environment_error, usage_error
from dermaguard.ui.web.address import (
    ADDRESS_NAME,
    Listening,
    read_listening,
    remove_listening,
    running,
    write_listening,
)

TOKEN_NAME: Final = "web-token"
log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "web",
        help="serve the phone-friendly dashboard (ready to roll?, live gauge, controls, history)",
        description="Serves the local web dashboard. It reads the device's MQTT topics, sends "
        "commands on cmd/ and reads the history read-only; it runs apart from the daemon, so a "
        "browser can never delay the alarm.",
    )
    p.add_argument("-c", "--config", type=Path, default=None, help="YAML config file")
    p.add_argument("--mqtt", metavar="HOST[:PORT]", help="the broker (overrides mqtt.host/port)")
    p.add_argument("--device", metavar="ID", help="the device_id to show (default: the config's)")
    p.add_argument("--listen", metavar="ADDRESS", help="address to listen on (web.listen)")
    p.add_argument("--port", type=int, help="port to listen on (web.port)")
    p.add_argument(
        "--simulate",
        action="store_true",
        help="show the simulated device (`dermaguard run --simulate`): its device id and history",
    )
    p.add_argument(
        "--show-url",
        action="store_true",
        help="print the sign-in link (with the token) and its QR code, then exit",
    )


def token_path(config: Config) -> Path:
    """``web.token_file``, or ``web-token`` in the state directory."""
    if config.web.token_file is not None:
        return Path(config.web.token_file).expanduser()
    return config.resolved_state_dir() / TOKEN_NAME


def _effective(args: argparse.Namespace) -> Config:
    from dermaguard.config.load import simulation_device_id

    config = load_config(args.config)
    if args.mqtt is not None:
        config = with_overrides(config, {"mqtt": broker_address(args.mqtt)}, "--mqtt")
    web: dict[str, object] = {}
    if args.listen is not None:
        web["listen"] = args.listen
    if args.port is not None:
        web["port"] = args.port
    if web:
        config = with_overrides(config, {"web": web}, " and ".join(f"--{k}" for k in web))
    if args.device is not None:
        config = with_overrides(config, {"device_id": args.device}, "--device")
    elif args.simulate:
        config = with_overrides(
            config, {"device_id": simulation_device_id(config.device_id)}, "--simulate"
        )
    return config


def _lan_address() -> str:
    """This machine's address on the network (no packet is sent: UDP connect only routes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET: never reached
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def sign_in_url(scheme: str, host: str, port: int, token: str) -> str:
    """The link a phone opens; a wildcard address becomes this machine's LAN address."""
    if host in ("0.0.0.0", "::", ""):
        host = _lan_address()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}/?token={token}"


def address_path(config: Config) -> Path:
    """``web-address`` in the state directory: where the running dashboard listens."""
    return config.resolved_state_dir() / ADDRESS_NAME


def show_url(config: Config, token: str, out: TextIO | None = None) -> None:
    """The link (and its QR code) of the dashboard that runs now, at the address and port it
    bound; from the config only when none is running, and then it says so."""
    import io

    import segno

    out = out or sys.stdout
    where = address_path(config)
    found = read_listening(where)
    if found is not None and running(found.pid):
        url = sign_in_url(found.scheme, found.host, found.port, token)
        note = ""
    else:
        scheme = "https" if config.web.tls_cert_file else "http"
        url = sign_in_url(scheme, config.web.listen, config.web.port, token)
        note = (
            f"The dashboard is not running now (nothing in {where}): this link uses "
            "web.listen and web.port from the config; start it, then run this again.\n\n"
        )
    qr = io.StringIO()
    segno.make(url, error="l").terminal(out=qr, compact=True)
    print(f"{note}Open this link on your phone (it signs the browser in):\n\n  {url}\n", file=out)
    print(qr.getvalue(), file=out)
    print("Keep it private: anyone with it can use the dashboard.", file=out)


def bind_error(host: str, port: int, exc: OSError) -> str:
    """Why the dashboard cannot listen, in words that point at the setting to change."""
    where = f"cannot listen on {host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"{where}: {host!r} is not an address of this machine (set web.listen or --listen)"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: another program already listens on port {port} (set web.port or --port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{where}: this machine has no address {host} (set web.listen or --listen: "
            "0.0.0.0 for every address, 127.0.0.1 for this machine only)"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: not allowed (ports below 1024 need privileges; set web.port or --port)"
    return f"{where}: {exc.strerror or exc}"


def cmd_web(args: argparse.Namespace) -> int:
    from dermaguard.config.paths import calibration_file, store_path
    from dermaguard.daemon.logs import setup_logging
    from dermaguard.mqtt.settings import MqttSettingsError, settings_from_config
    from dermaguard.ui.web.auth import FailureLimiter, TokenError, load_or_create_token

    config = _effective(args)
    path = token_path(config)
    if args.show_url:
        # Never make a token here: one made in the wrong directory (not the service's) would
        # be a link that does not work.
        if not path.exists():
            return usage_error(
                f"no web token at {path} yet: start the dashboard once (systemctl start "
                "dermaguard-web, or dermaguard web), or give the config whose state_dir or "
                "web.token_file the service uses"
            )
        try:
            show_url(config, load_or_create_token(path))
        except TokenError as exc:
            return usage_error(str(exc))
        return 0
    try:
        token = load_or_create_token(path)
    except TokenError as exc:
        return usage_error(str(exc))
    setup_logging(args.log_level or config.log_level)
    try:
        settings = settings_from_config(config)
    except MqttSettingsError as exc:
        return usage_error(str(exc))
    if not config.mqtt.enabled:
        return usage_error(
            "mqtt.enabled is false: the dashboard reads the device through the broker; "
            "enable MQTT (or give --mqtt HOST[:PORT])"
        )
    from dermaguard.ui.web.live import Hub
    from dermaguard.ui.web.server import WebContext, serve, ssl_context

    try:
        tls = ssl_context(config.web.tls_cert_file, config.web.tls_key_file)
    except (OSError, ValueError) as exc:
        return usage_error(f"web.tls_cert_file/web.tls_key_file: cannot load them ({exc})")
    ctx = WebContext(
        config=config,
        hub=Hub(settings, config.pressure.zones),
        token=token,
        history_path=store_path(config, simulated=args.simulate),
        calibration_path=calibration_file(config, simulated=args.simulate),
        tls=tls is not None,
        limiter=FailureLimiter(),
    )
    scheme = "https" if tls else "http"
    where = address_path(config)
    pid = os.getpid()

    def listening(host: str, port: int) -> None:
        try:
            write_listening(where, Listening(scheme, host, port, pid))
        except OSError as exc:
            log.warning("cannot write %s (--show-url will not find this server): %s", where, exc)
        log.info(
            "dashboard listening on %s://%s:%d for device %s via the broker at %s "
            "(sign-in link: dermaguard web --show-url)",
            scheme,
            host,
            port,
            config.device_id,
            settings.address,
        )
        if sys.stdout.isatty():
            # A person at a terminal gets the link at once; under systemd stdout is the
            # journal, where the token must never go (--show-url prints it on demand).
            print(f"open {sign_in_url(scheme, host, port, token)}", flush=True)

    try:
        serve(ctx, config.web.listen, config.web.port, tls, listening)
    except OSError as exc:
        message = bind_error(config.web.listen, config.web.port, exc)
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            return usage_error(message)  # an address that is not this machine's: the config
        return environment_error(message)  # the port is taken or not allowed: the machine
    finally:
        remove_listening(where, pid)
    return 0
