"""``python -m examples.ewallet``: run the scripted scenario (default) or serve the API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from examples.ewallet.composition import DEFAULT_URL
from examples.ewallet.scenario import ScenarioFailure, run
from finfactory.kernel.errors import FinFactoryError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="FinFactory reference e-wallet")
    parser.add_argument("--database-url", default=DEFAULT_URL, help="reset on every run")
    parser.add_argument("--deterministic", action="store_true", help="manual clock and ids")
    parser.add_argument("--qr-png", type=Path, help="write the merchant's static QR here")
    parser.add_argument("--serve", action="store_true", help="after the scenario, serve the API")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        services = run(args.database_url, deterministic=args.deterministic, qr_png=args.qr_png)
    except (ScenarioFailure, FinFactoryError) as err:  # anything else fails with a traceback
        print(f"\nSCENARIO FAILED: {err!r}", file=sys.stderr)
        return 1
    if args.serve:
        import uvicorn

        from examples.ewallet.api import create_app
        from examples.ewallet.scenario import token_table

        print(f"\nserving on http://127.0.0.1:{args.port}/docs (tokens: ops-token, ...)")
        uvicorn.run(create_app(services, token_table()), host="127.0.0.1", port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
