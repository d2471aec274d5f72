"""`gateway serve`: start the service with settings from the environment."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.catalog import Catalog, CatalogError
from gateway.keys import CATALOG
from gateway.logs import configure_logging
from gateway.serve import serve
from gateway.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service (configured by GATEWAY_* variables)")
    commands.add_parser("check-config", help="validate the configuration and exit")
    edge = commands.add_parser(
        "nginx-config", help="print an nginx configuration (nginx serves the bytes, this "
        "service decides), creating the folders it names under --prefix")
    edge.add_argument("--listen", default="0.0.0.0:8000", metavar="HOST:PORT",
                      help="where nginx listens (default 0.0.0.0:8000)")
    edge.add_argument("--prefix", default="var/nginx", type=Path, metavar="DIR",
                      help="nginx's own folder: pid, logs, temp files, caches "
                      "(default var/nginx); run nginx -p DIR -c nginx.conf")
    edge.add_argument("--gateway", action="append", metavar="URL",
                      help="a service instance behind nginx, http://HOST:PORT; repeat it "
                      "for several (default: this instance, from GATEWAY_HOST and PORT)")
    edge.add_argument("--workers", default="auto", help="nginx worker processes")
    edge.add_argument("--user", help="the user nginx's workers run as, when nginx is "
                      "started as root (otherwise ignored)")
    edge.add_argument("--no-access-log", action="store_true", help="no access log")
    edge.add_argument("--tls-cert", type=Path, metavar="PEM",
                      help="terminate TLS in nginx with this certificate chain")
    edge.add_argument("--tls-key", type=Path, metavar="PEM", help="... and this key")
    edge.add_argument("--delivery", choices=("gate", "keys"),
                      help="gate: nginx asks the service about every gated request; keys: "
                      "nginx caches the encrypted /media/ for everyone and passes /keys/ "
                      "on (default: GATEWAY_DELIVERY)")
    edge.add_argument("--output", type=Path, metavar="FILE",
                      help="write the configuration there instead of printing it "
                      "(e.g. DIR/nginx.conf)")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        from gateway.app import create_app

        app = create_app(settings)
    except (SettingsError, CatalogError) as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print("gateway: configuration is valid")
        return 0
    if args.command == "nginx-config":
        return _print_nginx_config(args, settings, app[CATALOG])
    configure_logging(settings.log_level, settings.log_format, settings.worker_index)
    if settings.workers > 1 and settings.worker_index is None:
        from gateway.workers import supervise

        return supervise(settings)
    try:
        asyncio.run(serve(app, settings))
    except ConnectionError as exc:  # the store could not be reached at start-up
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    return 0


def _print_nginx_config(args: argparse.Namespace, settings: Settings,
                        streams: Catalog) -> int:
    from gateway import nginx

    if (args.tls_cert is None) != (args.tls_key is None):
        print("gateway: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    prefix = args.prefix.resolve()
    try:
        options = nginx.EdgeOptions(
            listen=args.listen, prefix=prefix,
            gateways=tuple(args.gateway or [nginx.default_gateway(settings)]),
            workers=args.workers, user=args.user, access_log=not args.no_access_log,
            tls_certificate=args.tls_cert.resolve() if args.tls_cert else None,
            tls_certificate_key=args.tls_key.resolve() if args.tls_key else None,
            delivery=args.delivery or settings.delivery)
        config = nginx.render(streams, settings, options)
        nginx.prepare_prefix(prefix)
        if args.output is not None:
            args.output.write_text(config)
    except (ValueError, OSError) as exc:
        print(f"gateway: nginx-config: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
