"""The `vidgen-serve` command line: a local TF-Serving-compatible server and a client.

Example:

    vidgen-serve start --model_base_path models/vidgen --model_name vidgen \\
        --port 8500 --rest_api_port 8501
    vidgen-serve predict --target localhost:8500 --model vidgen --input clip.mp4 \\
        --horizon 10 --out out.gif
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from vidgen.cli import run_command
from vidgen.errors import VidgenError


def _cmd_start(args) -> int:
    from serving.core import BatchingOptions, Limits
    from serving.server import NOT_IMPLEMENTED, Server

    if not os.path.isdir(args.model_base_path):
        raise VidgenError(f"--model_base_path {args.model_base_path!r} is not a directory; "
                          "expected BASE/NAME holding numeric version directories.")
    for flag in ("port", "rest_api_port"):
        value = getattr(args, flag)
        if not 0 <= value <= 65535:
            raise VidgenError(f"--{flag} must be in [0, 65535]. Received: {value}")
    if args.file_system_poll_wait_seconds <= 0:
        raise VidgenError("--file_system_poll_wait_seconds must be positive. Received: "
                          f"{args.file_system_poll_wait_seconds}")
    limits = Limits(max_request_bytes=args.max_request_bytes,
                    max_tensor_bytes=args.max_request_bytes)
    batching = (BatchingOptions(args.max_batch_size, args.batch_timeout_micros / 1e6)
                if args.enable_batching else None)
    server = Server(args.model_base_path, args.model_name, args.port,
                    args.rest_api_port if args.rest_api_port else None, args.host,
                    args.file_system_poll_wait_seconds, limits, batching,
                    args.rest_api_timeout_in_ms / 1000 if args.rest_api_timeout_in_ms else None)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"vidgen-serve: loading the latest version under {args.model_base_path}; the "
          "ports open once it serves", flush=True)
    if not server.start(wait_for_model=True, interrupt=stop):
        server.stop(grace=0)
        print("vidgen-serve: stopped before a version loaded", flush=True)
        return 0
    print(f"vidgen-serve: model {args.model_name!r} from {args.model_base_path}; gRPC on "
          f"{args.host}:{server.port}" + (f", REST on {args.host}:{server.rest_api_port}"
                                           if server.rest_api_port else "") +
          (f"; batching up to {args.max_batch_size} within {args.batch_timeout_micros} us"
           if batching else "; no batching"), flush=True)
    print("vidgen-serve: not implemented from TF Serving: " + "; ".join(NOT_IMPLEMENTED) + ".",
          flush=True)
    stop.wait()
    print("vidgen-serve: stopping; finishing requests in flight", flush=True)
    server.stop(grace=args.drain_seconds)
    print("vidgen-serve: stopped", flush=True)
    return 0


def _cmd_predict(args) -> int:
    import numpy as np

    from export import contract as C
    from serving.client import PredictionClient
    from serving.errors import ServingError
    from vidgen.generate import check_output_path, load_input_clip, write_continuation

    if args.horizon <= 0 or args.horizon > C.MAX_HORIZON:
        raise VidgenError(f"--horizon must be in [1, {C.MAX_HORIZON}]. Received: {args.horizon}")
    check_output_path(args.out)
    with PredictionClient(args.target, args.model, args.version, signature=C.PREDICT_UINT8,
                          timeout=args.timeout) as client:
        try:
            spec = client.metadata()[C.PREDICT_UINT8]["inputs"][C.CONTEXT]["shape"]
            frame_size, channels = spec[2], spec[4]
            frames, _ = load_input_clip(args.input, frame_size, channels, args.context,
                                        horizon=args.horizon)
            context = np.round(frames[None, :args.context] * 255).astype(np.uint8)
            prediction = client.predict(context, args.horizon)[0]
        except ServingError as e:
            raise VidgenError(f"The request to {args.target} failed: "
                              f"{e.code.name}: {e.message}") from None
    written = write_continuation(args.out, frames, prediction.astype(np.float32) / 255.0,
                                 args.context, args.fps)
    print(f"Predicted {args.horizon} frames after {args.context} from {args.input}; wrote "
          f"{', '.join(written)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidgen-serve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("start", help="serve BASE/NAME over TF Serving's gRPC and REST APIs")
    s.add_argument("--model_base_path", required=True, help="BASE/NAME with version dirs")
    s.add_argument("--model_name", required=True)
    s.add_argument("--port", type=int, default=8500, help="gRPC port")
    s.add_argument("--rest_api_port", type=int, default=8501, help="REST port; 0 = no REST")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (0.0.0.0 exposes the server to the network)")
    s.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    s.add_argument("--enable_batching", action="store_true")
    s.add_argument("--max_batch_size", type=int, default=16)
    s.add_argument("--batch_timeout_micros", type=int, default=2000)
    s.add_argument("--max_request_bytes", type=int, default=256 << 20)
    s.add_argument("--rest_api_timeout_in_ms", type=int, default=30000)
    s.add_argument("--drain_seconds", type=float, default=30.0,
                   help="on SIGTERM, how long requests in flight may take to finish")
    s.set_defaults(func=_cmd_start)

    p = sub.add_parser("predict", help="continue a clip with a served model (gRPC)")
    p.add_argument("--target", default="localhost:8500")
    p.add_argument("--model", default="vidgen")
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--input", required=True, help="video file, frame folder or .npy clip")
    p.add_argument("--context", type=int, default=10, help="frames of the input given")
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--out", required=True, help=".gif, .mp4 or .png")
    p.add_argument("--fps", type=float, default=4.0)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for each call")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return run_command("vidgen-serve", args)


if __name__ == "__main__":
    sys.exit(main())
