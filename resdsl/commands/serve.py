"""``resdsl serve``: serve a model repository with the Triton server bundled by nvidia-pytriton.

For local use and tests: it binds the loopback interface unless told otherwise, prints the
endpoints and the models that became ready, and on Ctrl-C (or SIGTERM) forwards the signal
to the server, waits for it to drain and reaps it.
"""

from __future__ import annotations

import argparse
import signal
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve a Triton model repository locally (needs resdsl[serve])")
    p.add_argument("--repo", required=True, metavar="DIR", help="the model repository ('resdsl export triton')")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port (KServe v2; default 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--poll", type=int, metavar="SECS", help="reload the repository every SECS (new versions appear)")
    p.add_argument("--log", metavar="FILE", help="where the server's log goes (default: a temporary file)")
    p.set_defaults(func=run)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from resdsl.errors import ResdslError
    from resdsl.serving.triton_server import TritonServer

    server = TritonServer(args.repo, args.http_port, args.grpc_port, args.host, args.poll, args.log)
    # Both signals, explicitly: a shell starts background jobs with SIGINT ignored.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(f"tritonserver {server.bundle.root}")
        print(f"HTTP (KServe v2): {server.http_url}   gRPC: {server.grpc_url}   log: {server.log_path}")
        models = server.models()
        for m in models:
            state = m.get("state", "?")
            reason = f" ({m['reason']})" if m.get("reason") and state != "READY" else ""
            print(f"model {m['name']} version {m.get('version', '?')}: {state}{reason}")
        if not any(m.get("state") == "READY" for m in models):
            print("no model became ready; see the log", file=sys.stderr)
        print("serving; Ctrl-C to stop", flush=True)
        code = server.proc.wait()
        raise ResdslError(f"tritonserver exited with status {code}: {server.log_tail(1)}")
    except KeyboardInterrupt:
        code = server.stop()
        print(f"stopped (tritonserver exit status {code})")
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
