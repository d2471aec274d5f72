"""`gateway serve`: start the service with settings from the environment."""

from __future__ import annotations

import argparse
import asyncio
import sys

from gateway.catalog import CatalogError
from gateway.logs import configure_logging
from gateway.serve import serve
from gateway.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service (configured by GATEWAY_* variables)")
    commands.add_parser("check-config", help="validate the configuration and exit")
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
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(app, settings))
    except ConnectionError as exc:  # the store could not be reached at start-up
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
