"""The `vidgen-serve` command line: a local TF-Serving-compatible server and a client.

Example:

    vidgen-serve start --model_base_path models/vidgen --model_name vidgen \\
        --port 8500 --rest_api_port 8501
    vidgen-serve start --model_config_file models.config \\
        --model_config_file_poll_wait_seconds 5 --monitoring_config_file monitoring.config
    vidgen-serve predict --target localhost:8500 --model vidgen --input clip.mp4 \\
        --horizon 10 --out out.gif
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from vidgen.cli_common import (
    add_common_args,
    configure_logging,
    flag_names,
    run_command,
    start_up,
    verbose_anywhere,
)
from vidgen.errors import VidgenError


def _cmd_start(args) -> int:
    from serving.core import BatchingOptions, Limits
    from serving.errors import ConfigFileError, ServingError
    from serving.server import NOT_IMPLEMENTED, Server

    loading, served = _check_model_flags(args)
    for flag in ("port", "rest_api_port"):
        value = getattr(args, flag)
        if not 0 <= value <= 65535:
            raise VidgenError(f"--{flag} must be in [0, 65535]. Received: {value}")
    if args.file_system_poll_wait_seconds <= 0:
        raise VidgenError("--file_system_poll_wait_seconds must be positive. Received: "
                          f"{args.file_system_poll_wait_seconds}")
    if args.max_batch_bytes is not None and not args.enable_batching:
        raise VidgenError("--max_batch_bytes bounds merged batches, which only "
                          "--enable_batching makes; received --max_batch_bytes "
                          f"{args.max_batch_bytes} without --enable_batching.")
    for flag in ("max_request_bytes", "max_json_request_bytes", "max_response_bytes",
                 "max_in_flight_requests", "max_in_flight_bytes", "max_rest_connections",
                 "max_batch_bytes"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise VidgenError(f"--{flag} must be positive. Received: {getattr(args, flag)}")
    if args.max_in_flight_bytes < args.max_request_bytes:
        raise VidgenError("--max_in_flight_bytes must be at least --max_request_bytes, or the "
                          "largest request could never run. Received: --max_in_flight_bytes "
                          f"{args.max_in_flight_bytes}, --max_request_bytes "
                          f"{args.max_request_bytes}")
    limits = Limits(max_request_bytes=args.max_request_bytes,
                    max_tensor_bytes=args.max_request_bytes,
                    max_json_request_bytes=args.max_json_request_bytes,
                    max_response_bytes=args.max_response_bytes)
    batching = _batching_options(args, BatchingOptions)
    monitoring_config = _monitoring_config(args)
    try:
        server = Server(
            args.model_base_path, args.model_name, args.port,
            args.rest_api_port if args.rest_api_port else None, args.host,
            args.file_system_poll_wait_seconds, limits, batching,
            args.rest_api_timeout_in_ms / 1000 if args.rest_api_timeout_in_ms else None,
            model_config_file=args.model_config_file,
            model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
            allow_version_labels_for_unavailable_models=(
                args.allow_version_labels_for_unavailable_models),
            monitoring_config=monitoring_config,
            max_in_flight_requests=args.max_in_flight_requests,
            max_in_flight_bytes=args.max_in_flight_bytes,
            max_rest_connections=args.max_rest_connections,
            max_batch_bytes=args.max_batch_bytes)
    except (ServingError, ConfigFileError) as e:
        raise VidgenError(_config_refusal(args, e)) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"vidgen-serve: loading {loading}", flush=True)
    if not server.start(wait_for_model=True, interrupt=stop):
        server.stop(grace=0)
        print("vidgen-serve: stopped before a version loaded", flush=True)
        return 0
    if server.metrics_path:
        served += (f"; Prometheus metrics on http://{args.host}:{server.rest_api_port}"
                   f"{server.metrics_path}")
    print(f"vidgen-serve: {served}; gRPC on "
          f"{args.host}:{server.port}" + (f", REST on {args.host}:{server.rest_api_port}"
                                           if server.rest_api_port else "") +
          _batching_banner(batching, server.core.max_batch_bytes), flush=True)
    print("vidgen-serve: not implemented from TF Serving: " + "; ".join(NOT_IMPLEMENTED) + ".",
          flush=True)
    stop.wait()
    print("vidgen-serve: stopping; finishing requests in flight", flush=True)
    server.stop(grace=args.drain_seconds)
    print("vidgen-serve: stopped", flush=True)
    return 0


def _check_model_flags(args) -> tuple[str, str]:
    """Checks the flags naming the models; returns what to say while loading and after."""
    from serving import model_config
    from serving.errors import ConfigFileError, ServingError

    single = args.model_base_path is not None or args.model_name is not None
    if args.model_config_file and single:
        raise VidgenError("--model_config_file and --model_base_path/--model_name are mutually "
                          "exclusive: give --model_config_file PATH, or --model_base_path "
                          "BASE/NAME with --model_name NAME, not both.")
    if not args.model_config_file and not single:
        raise VidgenError("vidgen-serve start needs the models: give --model_config_file PATH, "
                          "or --model_base_path BASE/NAME with --model_name NAME; received "
                          "neither.")
    if args.model_config_file_poll_wait_seconds < 0:
        raise VidgenError("--model_config_file_poll_wait_seconds must be 0 (never re-read) or "
                          f"positive. Received: {args.model_config_file_poll_wait_seconds}")
    if single:
        if not (args.model_base_path and args.model_name):
            given, missing = (("--model_base_path", "--model_name") if args.model_base_path
                              else ("--model_name", "--model_base_path"))
            raise VidgenError(f"{given} needs {missing} too (BASE/NAME and the name requests "
                              f"use); received {given} only.")
        if not os.path.isdir(args.model_base_path):
            raise VidgenError(f"--model_base_path {args.model_base_path!r} is not a directory; "
                              "expected BASE/NAME holding numeric version directories.")
        return (f"the latest version under {args.model_base_path}; the ports open once it "
                "serves",
                f"model {args.model_name!r} from {args.model_base_path} (TF Serving's version "
                "policy 'latest' only, as with --model_base_path; --model_config_file gives "
                "'all', 'specific' and version labels)")
    try:
        config = model_config.read_model_config(args.model_config_file)
        model_config.validate(config)
    except (ServingError, ConfigFileError) as e:
        raise VidgenError(_config_refusal(args, e)) from None
    for model in config.model_config_list.config:
        if not os.path.isdir(model.base_path):
            raise VidgenError(f"--model_config_file {args.model_config_file}: model "
                              f"{model.name}'s base_path {model.base_path!r} is not a "
                              "directory; expected BASE/NAME holding numeric version "
                              "directories.")
    every = args.model_config_file_poll_wait_seconds
    served = (f"models {model_config.describe(config)} from --model_config_file "
              f"{args.model_config_file}" + (f", re-read every {every:g} s" if every else ""))
    return (f"the models of {args.model_config_file}; the ports open once each serves a "
            "version", served)


def _config_refusal(args, error) -> str:
    """One sentence for a refused model config, naming the flag."""
    from serving.errors import ServingError

    if not isinstance(error, ServingError):   # a ConfigFileError names the file itself
        return f"--model_config_file {error}"
    message = f"--model_config_file {args.model_config_file}: {error.message}"
    if error.code.name == "FAILED_PRECONDITION":
        message += (" (TF Serving's rule: a label may name only a version that serves; at "
                    "start-up none does yet, so pass --allow_version_labels_for_unavailable_"
                    "models to allow new labels)")
    return message


def _monitoring_config(args):
    """The parsed --monitoring_config_file, or None."""
    if not args.monitoring_config_file:
        return None
    from serving import monitoring
    from serving.errors import ConfigFileError

    try:
        config = monitoring.read_monitoring_config(args.monitoring_config_file)
        path = monitoring.prometheus_path(config)
    except ConfigFileError as e:
        raise VidgenError(f"--monitoring_config_file {e}") from None
    if path and not args.rest_api_port:
        raise VidgenError("--monitoring_config_file enables Prometheus metrics, which are "
                          "served on the REST port; received --rest_api_port 0 (no REST).")
    return config


def _flag_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, received {text!r}")


def _batching_options(args, options_class):
    """TF Serving's batching flags as BatchingOptions, or None without --enable_batching."""
    if not args.enable_batching:
        if args.batching_parameters_file:   # TF Serving's start-up refusal, verbatim
            raise VidgenError("You supplied --batching_parameters_file without "
                              "--enable_batching")
        if args.enable_per_model_batching_parameters:
            raise VidgenError("--enable_per_model_batching_parameters is only applicable "
                              "when --enable_batching is set.")
        return None
    per_model = args.enable_per_model_batching_parameters
    try:
        if args.batching_parameters_file:
            return options_class.from_file(args.batching_parameters_file, per_model=per_model)
        return options_class(per_model=per_model)
    except ValueError as e:
        raise VidgenError(f"--batching_parameters_file: {e}") from None


def _batching_banner(batching, max_batch_bytes: int) -> str:
    if batching is None:
        return "; no batching"
    bound = f"; at most {max_batch_bytes} bytes a merged batch (--max_batch_bytes)"
    if batching.per_model:
        return ("; batching: each version's own batching_params.pbtxt (a version without one "
                f"is not batched), {batching.num_batch_threads} batch threads" + bound)
    return f"; batching: {batching.describe()}" + bound


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
    add_common_args(parser)   # --version, -v; `predict --version` is the model version
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("start", help="serve BASE/NAME over TF Serving's gRPC and REST APIs")
    s.add_argument("--model_base_path", help="BASE/NAME with version dirs (one model)")
    s.add_argument("--model_name", help="the name requests use (with --model_base_path)")
    s.add_argument("--model_config_file",
                   help="TF Serving ModelServerConfig text file: several models, version "
                        "policies, labels (instead of --model_base_path/--model_name)")
    s.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0.0,
                   help="re-read --model_config_file this often (0 = never)")
    s.add_argument("--allow_version_labels_for_unavailable_models", type=_flag_bool,
                   nargs="?", const=True, default=False,
                   help="let a new label name a version that is not serving yet")
    s.add_argument("--monitoring_config_file",
                   help="TF Serving MonitoringConfig text file; prometheus_config { enable: "
                        "true } serves metrics on the REST port")
    s.add_argument("--port", type=int, default=8500, help="gRPC port")
    s.add_argument("--rest_api_port", type=int, default=8501, help="REST port; 0 = no REST")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (0.0.0.0 exposes the server to the network)")
    s.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    s.add_argument("--enable_batching", action="store_true",
                   help="merge concurrent requests into one model call (TF Serving's flag)")
    s.add_argument("--batching_parameters_file", default="",
                   help="TF Serving BatchingParameters text file (default: TF Serving's "
                        "defaults: max_batch_size 1000, batch_timeout_micros 0, "
                        "max_enqueued_batches 10, a batch thread per core)")
    s.add_argument("--enable_per_model_batching_parameters", action="store_true",
                   help="read each version's batching_params.pbtxt (thread pool from the "
                        "server's file); a version without one is not batched")
    s.add_argument("--max_request_bytes", type=int, default=256 << 20)
    s.add_argument("--max_batch_bytes", type=int, default=None,
                   help="most bytes in one merged batch (stacked and padded, counted at the "
                        "float32 working size; default: --max_request_bytes); a request that "
                        "would make its batch larger starts the next batch, and one larger "
                        "alone runs alone (vidgen's flag; TF Serving's BatchingParameters has "
                        "no byte limit)")
    s.add_argument("--max_json_request_bytes", type=int, default=32 << 20,
                   help="largest REST (JSON) body, refused with 413 before it is read: "
                        "json.loads alone makes 6-8 bytes of Python objects per body byte "
                        "(vidgen's flag; TF Serving has none)")
    s.add_argument("--max_response_bytes", type=int, default=512 << 20,  # Limits' default
                   help="largest answer a request may ask for, as float32 frames (a REST "
                        "answer's JSON text is bounded by the same number); beyond it "
                        "INVALID_ARGUMENT before the model runs, or RESOURCE_EXHAUSTED / 413 "
                        "for JSON (vidgen's flag; TF Serving has none)")
    s.add_argument("--max_in_flight_requests", type=int, default=32,
                   help="Predict requests (gRPC and REST together) in flight at most; beyond, "
                        "RESOURCE_EXHAUSTED / HTTP 429 at once instead of queueing (vidgen's "
                        "flag; TF Serving has none)")
    s.add_argument("--max_in_flight_bytes", type=int, default=1 << 30,
                   help="request bytes in flight at most, at least --max_request_bytes; a "
                        "request counts at the larger of its wire size and what it decodes "
                        "to (float32 working size, one-value fills at their full shape), "
                        "checked before decoding; beyond, RESOURCE_EXHAUSTED / HTTP 429 "
                        "(vidgen's flag; TF Serving has none)")
    s.add_argument("--max_rest_connections", type=int, default=256,
                   help="open REST connections at most; beyond, HTTP 503 and the connection "
                        "is closed (vidgen's flag; TF Serving has none)")
    s.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                   help="a REST request's deadline, body read and JSON parsing included; "
                        "also how long a connection may take to send a request or stay idle")
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
    return verbose_anywhere(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, timestamps=True)
    start_up(args.verbose)
    return run_command("vidgen-serve", args, flag_names(parser))


if __name__ == "__main__":
    sys.exit(main())
