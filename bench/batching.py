"""Server-side batching with TF Serving's parameters file: requests/s, batching on vs off.

Starts two `vidgen-serve start` processes on 127.0.0.1 over the same export,
one without batching and one with `--enable_batching --batching_parameters_file
serving/deploy/batching_parameters.txt` (or `--batching_parameters_file`), and
drives both with 1, 4 and 16 concurrent gRPC clients (each a PredictionClient
on its own channel; every request one clip, serving_default, float32),
alternating off and on at each client count so both see the same machine.
Prints a table and writes DIR/results.json and DIR/REPORT.md.

    python -m bench.batching --out runs/batching               # the quick model, 64x64, 10 -> 10
    python -m bench.batching --out runs/batching --export models/vidgen/1
    python -m bench.batching --out runs/batching-smoke --smoke  # a tiny model, well under a minute
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from bench.serving import drive
from export.savedmodel import export_savedmodel
from serving.client import PredictionClient
from vidgen import __version__
from vidgen.config import apply_overrides
from vidgen.fileio import write_json_atomic
from vidgen.presets import get_preset
from vidgen.run_dir import RunPaths, save_model
from vidgen.training.build import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY_PARAMS = os.path.join(ROOT, "serving", "deploy", "batching_parameters.txt")
CLIENTS = (1, 4, 16)
# A tiny model for --smoke: the test suite's shapes (16x16 frames, narrow layers).
SMOKE_OVERRIDES = ["data.frame_size=16", "data.context=3", "data.horizon=2",
                   "model.encoder_filters=[4, 8]", "model.core_filters=[8]",
                   "model.decoder_filters=[8, 4]", "model.dna_kernel=3"]


def export_model(tmp: str, smoke: bool) -> str:
    """The `quick` preset's model (weights as initialised: they do not change the work),
    or a tiny one for --smoke, exported as tmp/models/vidgen/1."""
    cfg = get_preset("quick")
    if smoke:
        cfg = apply_overrides(cfg, SMOKE_OVERRIDES)
    run = RunPaths(os.path.join(tmp, "run"))
    os.makedirs(run.root)
    cfg.to_json(run.config)
    save_model(build_model(cfg), run.model)
    return export_savedmodel(run.root, os.path.join(tmp, "models"), "vidgen", 1)


def model_dir(export: str) -> tuple[str, str]:
    """(BASE/NAME, NAME) of a version directory or of BASE/NAME itself."""
    export = os.path.abspath(export)
    if os.path.isfile(os.path.join(export, "saved_model.pb")):
        export = os.path.dirname(export)
    if not os.path.isdir(export):
        raise SystemExit(f"--export {export!r} is neither a version directory nor BASE/NAME.")
    return export, os.path.basename(export)


def start_server(base: str, name: str, params: str | None):
    """A `vidgen-serve start` process; (process, gRPC port) once its model serves."""
    cmd = [sys.executable, "-m", "serving.cli", "start", "--model_base_path", base,
           "--model_name", name, "--port", "0", "--rest_api_port", "0"]
    if params:
        cmd += ["--enable_batching", "--batching_parameters_file", params]
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        m = re.search(r"gRPC on 127\.0\.0\.1:(\d+)", line)
        if m:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, int(m.group(1))
    proc.wait()
    raise RuntimeError("vidgen-serve start did not come up:\n" + "".join(lines))


def measure(port: int, name: str, context: np.ndarray, horizon: int, clients: int,
            seconds: float) -> dict:
    local = threading.local()

    def call():
        if not hasattr(local, "client"):
            local.client = PredictionClient(f"127.0.0.1:{port}", name, timeout=120, retries=8)
        return local.client.predict(context, horizon)

    return drive(call, clients, seconds)


def table(results: dict) -> str:
    rows = ["| gRPC clients | no batching: req/s | p50 / p99 ms | batching: req/s | "
            "p50 / p99 ms | on / off |", "|---:|---:|---:|---:|---:|---:|"]
    for clients in results["clients"]:
        off, on = (results[mode][str(clients)] for mode in ("off", "on"))
        ratio = on["requests_per_s"] / off["requests_per_s"] if off["requests_per_s"] else 0
        rows.append(f"| {clients} | {off['requests_per_s']} | {off['p50_ms']} / "
                    f"{off['p99_ms']} | {on['requests_per_s']} | {on['p50_ms']} / "
                    f"{on['p99_ms']} | {ratio:.2f} |")
    return "\n".join(rows)


def report_md(results: dict) -> str:
    r = results["request"]
    params = "".join(line for line in results["batching_parameters"].splitlines(True)
                     if line.strip() and not line.lstrip().startswith("#"))
    failed = sum(results[m][str(c)]["failed"] for m in ("off", "on") for c in results["clients"])
    return f"""# Server-side batching: requests/s with the batching file

`{results['command']}` on {results['date']}, {results['machine']['cpus']} cores
({results['machine']['platform']}), commit {results['commit']}, vidgen {results['vidgen']}.

Two `vidgen-serve start` processes over the same export, {results['model']}: one
without batching, one with `--enable_batching --batching_parameters_file
{results['batching_parameters_file']}`. Each request is one clip of {r['context']}
context frames -> {r['horizon']} predicted frames, {r['frame']} (serving_default,
float32); every client is a thread with its own gRPC channel, calling back to back.
At each client count the two servers were measured one after the other,
{results['seconds']} s each after a warm-up; clients and servers share the machine's cores.

{table(results)}

Failed requests: {failed}. Batching parameters (comments left out):

```
{params}```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for results.json and REPORT.md")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny model and short measurements (well under a minute)")
    parser.add_argument("--export", help="version directory or BASE/NAME to serve "
                                         "(default: export the quick preset's model)")
    parser.add_argument("--batching_parameters_file", default=DEPLOY_PARAMS)
    parser.add_argument("--seconds", type=float, help="per measurement (default 10; smoke 1)")
    parser.add_argument("--context", type=int, help="context frames (default: the export's)")
    parser.add_argument("--horizon", type=int, help="predicted frames (default: the export's)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.0 if args.smoke else 10.0)
    with open(args.batching_parameters_file) as f:
        params_text = f.read()
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        version = args.export or export_model(tmp, args.smoke)
        base, name = model_dir(version)
        card_dirs = sorted((d for d in os.listdir(base) if d.isdigit()), key=int)
        with open(os.path.join(base, card_dirs[-1], "assets.extra",
                               "vidgen_model_card.json")) as f:
            card = json.load(f)
        frames = card["frames"]
        context_len = args.context or frames["context_trained"]
        horizon = args.horizon or frames["horizon_trained"]
        context = np.random.default_rng(0).random(
            (1, context_len, frames["size"], frames["size"], frames["channels"]),
            dtype=np.float32)
        servers = {"off": start_server(base, name, None),
                   "on": start_server(base, name, args.batching_parameters_file)}
        results = {"benchmark": "batching", "clients": list(CLIENTS), "off": {}, "on": {}}
        try:
            for i, clients in enumerate(CLIENTS):
                order = ("off", "on") if i % 2 == 0 else ("on", "off")
                for mode in order:
                    out = measure(servers[mode][1], name, context, horizon, clients, seconds)
                    results[mode][str(clients)] = out
                    print(f"batching {mode:3s} {clients:2d} clients: {out}", flush=True)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(60)
    command = "python -m bench.batching " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    results.update({
        "command": command, "mode": "smoke" if args.smoke else "full",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": (f"{version}" if args.export else
                  "a tiny model (16x16, the test suite's layers)" if args.smoke else
                  "the quick preset (64x64, 150k parameters, weights as initialised)"),
        "request": {"batch": 1, "context": context_len, "horizon": horizon,
                    "frame": f"{frames['size']}x{frames['size']}x{frames['channels']}"},
        "seconds": seconds,
        "batching_parameters_file": os.path.relpath(args.batching_parameters_file, ROOT),
        "batching_parameters": params_text, "wall_seconds": round(time.perf_counter() - start),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "commit": commit, "vidgen": __version__})
    write_json_atomic(os.path.join(args.out, "results.json"), results)
    with open(os.path.join(args.out, "REPORT.md"), "w") as f:
        f.write(report_md(results))
    print(table(results))
    print(f"wrote {args.out}/results.json and REPORT.md in {results['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
