"""`python -m tasks.corpus.miniweb --port 8000`: serve the mini-web until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from tasks.corpus.miniweb.dump import write_submissions_dump
from tasks.corpus.miniweb.server import MiniWeb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the gpt2lab mini-web until Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--articles", type=int, default=200, help="article pages (200)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the articles (0)")
    parser.add_argument("--dump", type=Path, help="also write a submissions dump here")
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # Stop on Ctrl-C and on `kill`, even when started in the background by a shell
        # (which makes such processes ignore SIGINT).
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, signal.default_int_handler)
    # Ctrl-C may come at any moment, even before the wait: catch it around everything.
    try:
        with MiniWeb(args.articles, args.seed, host=args.host, port=args.port) as web:
            print(f"mini-web: {len(web.articles)} articles at {web.base_url}", flush=True)
            if args.dump:
                print(f"submissions dump: {write_submissions_dump(args.dump, web)}", flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        print("mini-web: stopped", flush=True)


if __name__ == "__main__":
    main()
