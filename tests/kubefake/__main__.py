"""`python -m tests.kubefake --port P [--kubeconfig FILE] [--token-kubeconfig FILE]`: run the fake
API server in the foreground until SIGTERM/SIGINT; prints one line when it is ready."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from .server import FakeApiServer


async def _serve(args: argparse.Namespace) -> None:
    async with FakeApiServer(
        args.port, bookmark_interval=args.bookmark_interval, verbose=args.verbose
    ) as api:
        if args.kubeconfig:
            api.write_kubeconfig(Path(args.kubeconfig), user="cert")
        if args.token_kubeconfig:
            api.write_kubeconfig(Path(args.token_kubeconfig), user="token")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"kubefake: serving {api.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kubefake", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--kubeconfig", help="write a kubeconfig (admin client certificate) to FILE"
    )
    parser.add_argument(
        "--token-kubeconfig", help="write a kubeconfig (admin bearer token) to FILE"
    )
    parser.add_argument("--bookmark-interval", type=float, default=1.0)
    parser.add_argument("--verbose", action="store_true", help="print every request")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
