"""The local server under overload and slow clients, and its memory at maximum-size requests.

Exports the `quick` preset's model (64x64; weights as initialised), starts
`vidgen-serve start` as its own process with small bounds, then:

1. overload: 4x more concurrent gRPC clients than --max_in_flight_requests,
   back to back for --seconds (no back-off: the harshest case): OK,
   RESOURCE_EXHAUSTED, hangs (client deadline exceeded), other errors, whether
   the server process is alive, p50/p99 latency of the accepted requests;
2. slow clients: 64 REST connections sending a request line one byte per
   second, and 64 more (16x --max_in_flight_requests) that send full headers
   with a Content-Length and then one body byte per second (a slow body must
   hold a connection thread, not an admission slot); meanwhile a normal REST
   and gRPC request must answer within their deadline; then SIGTERM while the
   128 are open: the process must exit within --drain_seconds;
3. memory: peak RSS (VmHWM) of a fresh server process serving maximum-size
   gRPC requests (just under --max_request_bytes) and maximum-size JSON
   bodies (just under --max_json_request_bytes), in-flight limit reached;
   and, in this process, the bytes json.loads allocates per byte of body.

Writes DIR/results.json and DIR/REPORT.md.

    python -m bench.load --out DIR [--smoke]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc

import grpc
import numpy as np

from bench.serving import export_quick, launch
from serving.client import PredictionClient
from serving.errors import ServingError
from vidgen.fileio import write_json_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "vidgen"
LIMIT = 4                     # --max_in_flight_requests
REQUEST_MB, JSON_MB = 8, 2    # --max_request_bytes, --max_json_request_bytes (MiB)
DRAIN = 5.0                   # --drain_seconds
SLOW_CLIENTS = 64
SLOW_BODIES = 64              # slow-body connections, on top of the SLOW_CLIENTS
SLOW_BODY_BYTES = 1 << 10     # their Content-Length: never complete within a phase
CLIENT_DEADLINE = 10.0
# The memory bound stated for this model: peak RSS <= idle + RSS_BOUND x --max_in_flight_bytes.
# Measured ~7-8x: besides the request's copies (gRPC buffer, proto, array, TensorFlow's tensor)
# the model's activations over a maximum-length context scale with the request.
RSS_BOUND = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(base: str):
    rest_port = free_port()
    cmd = [sys.executable, "-m", "serving.cli", "start", "--model_base_path", base,
           "--model_name", MODEL, "--port", "0", "--rest_api_port", str(rest_port),
           "--max_in_flight_requests", str(LIMIT),
           "--max_request_bytes", str(REQUEST_MB << 20),
           "--max_in_flight_bytes", str(LIMIT * (REQUEST_MB << 20)),
           "--max_json_request_bytes", str(JSON_MB << 20), "--drain_seconds", str(DRAIN)]
    proc, port = launch(cmd)
    return proc, port, rest_port


def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def overload(port: int, seconds: float) -> dict:
    context = np.random.default_rng(0).random((1, 4, 64, 64, 1), dtype=np.float32)
    counts = {"ok": 0, "resource_exhausted": 0, "hangs": 0, "other_errors": 0}
    latencies, other, lock, stop = [], [], threading.Lock(), threading.Event()

    def worker():
        with PredictionClient(f"127.0.0.1:{port}", MODEL, timeout=CLIENT_DEADLINE,
                              retries=0) as client:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    client.predict(context, 2)
                    key = "ok"
                except ServingError as e:
                    key = {grpc.StatusCode.RESOURCE_EXHAUSTED: "resource_exhausted",
                           grpc.StatusCode.DEADLINE_EXCEEDED: "hangs"}.get(e.code,
                                                                          "other_errors")
                    if key == "other_errors":
                        other.append(f"{e.code.name}: {e.message}"[:200])
                with lock:
                    counts[key] += 1
                    if key == "ok":
                        latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker) for _ in range(4 * LIMIT)]
    for t in threads:
        t.start()
    time.sleep(seconds)   # the measurement's duration, not a wait for an event
    stop.set()
    for t in threads:
        t.join(CLIENT_DEADLINE + 5)
    ms = np.asarray(latencies) * 1000
    return {"clients": 4 * LIMIT, "max_in_flight_requests": LIMIT, "seconds": seconds,
            **counts, "client_threads_stuck": sum(t.is_alive() for t in threads),
            "accepted_p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "accepted_p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
            "other_error_examples": sorted(set(other))[:5]}


def rest_predict(rest_port: int, body: bytes, timeout: float) -> tuple[int, float]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=timeout)
    conn.request("POST", f"/v1/models/{MODEL}:predict", body,
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, time.perf_counter() - t0


def json_body(batch: int, frames: int) -> bytes:
    context = np.random.default_rng(1).random((batch, frames, 64, 64, 1), dtype=np.float32)
    return json.dumps({"inputs": {"context": context.tolist(),
                                  "horizon": [1] * batch}}).encode()


def slow_clients(proc, port: int, rest_port: int, seconds: float) -> dict:
    """Slow request lines and slow bodies open; a normal REST and gRPC request; SIGTERM."""
    line = f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n".encode()
    socks = [socket.create_connection(("127.0.0.1", rest_port), timeout=5)
             for _ in range(SLOW_CLIENTS)]
    # Headers at once, then the body a byte at a time: the request is complete as far as
    # the headers go, so a server that admits before reading the body would give these
    # connections every in-flight slot.
    headers = (f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n"
               f"Content-Type: application/json\r\nContent-Length: {SLOW_BODY_BYTES}"
               "\r\n\r\n").encode()
    bodies = [socket.create_connection(("127.0.0.1", rest_port), timeout=5)
              for _ in range(SLOW_BODIES)]
    for s in bodies:
        s.sendall(headers)
    sent, body_sent, stop = [0], [0], threading.Event()

    def trickle():
        while not stop.is_set() and (sent[0] < len(line) or body_sent[0] < SLOW_BODY_BYTES):
            if sent[0] < len(line):
                for s in socks:
                    try:
                        s.send(line[sent[0]:sent[0] + 1])
                    except OSError:
                        pass
                sent[0] += 1
            if body_sent[0] < SLOW_BODY_BYTES:
                for s in bodies:
                    try:
                        s.send(b" ")   # JSON whitespace: the body stays valid so far
                    except OSError:
                        pass
                body_sent[0] += 1
            stop.wait(1.0)   # one byte per second per connection, by design

    threading.Thread(target=trickle, daemon=True).start()
    stop.wait(min(2.0, seconds))
    try:
        status, rest_s = rest_predict(rest_port, json_body(1, 4), CLIENT_DEADLINE)
    except OSError as e:   # timed out or refused: recorded, not raised
        status, rest_s = f"{type(e).__name__}: {e}", CLIENT_DEADLINE
    t0 = time.perf_counter()
    grpc_status = "OK"
    with PredictionClient(f"127.0.0.1:{port}", MODEL, timeout=CLIENT_DEADLINE,
                          retries=0) as client:
        try:
            client.predict(np.zeros((1, 4, 64, 64, 1), np.float32), 2)
        except ServingError as e:
            grpc_status = e.code.name
    grpc_s = time.perf_counter() - t0
    stop.wait(max(0.0, seconds - 2.0))
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(DRAIN + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = "killed after drain + 30 s"
    exit_s = time.monotonic() - t0
    stop.set()
    for s in socks + bodies:
        s.close()
    return {"connections": SLOW_CLIENTS, "bytes_sent_each": sent[0],
            "slow_body_connections": SLOW_BODIES, "slow_body_content_length": SLOW_BODY_BYTES,
            "body_bytes_sent_each": body_sent[0],
            "normal_rest_request": {"status": status, "seconds": round(rest_s, 3),
                                    "deadline_s": CLIENT_DEADLINE,
                                    "within_deadline": status == 200
                                    and rest_s <= CLIENT_DEADLINE},
            "normal_grpc_request": {"ok": grpc_status == "OK", "status": grpc_status,
                                    "seconds": round(grpc_s, 3),
                                    "within_deadline": grpc_status == "OK"
                                    and grpc_s <= CLIENT_DEADLINE},
            "sigterm_exit": {"code": code, "seconds": round(exit_s, 2),
                             "drain_seconds": DRAIN, "within_drain": exit_s <= DRAIN}}


def memory(proc, port: int, rest_port: int, rounds: int) -> dict:
    """Peak RSS of a fresh server at maximum-size gRPC and JSON requests, LIMIT at a time."""
    idle = vm_kib(proc.pid, "VmHWM")
    frames = ((REQUEST_MB << 20) - (64 << 10)) // (64 * 64 * 4)   # just under the limit
    big = np.random.default_rng(2).random((1, frames, 64, 64, 1), dtype=np.float32)
    body = json_body(1, 1)
    per_frame = len(body)
    json_frames = max(1, ((JSON_MB << 20) - 4096) // per_frame)
    json_big = json_body(1, json_frames)
    outcome = {"grpc_ok": 0, "grpc_refused": 0, "rest_status": []}

    def grpc_call():
        with PredictionClient(f"127.0.0.1:{port}", MODEL, timeout=120, retries=0) as c:
            try:
                c.predict(big, 1)
                outcome["grpc_ok"] += 1
            except Exception:  # noqa: BLE001 - counted
                outcome["grpc_refused"] += 1

    def rest_call():
        outcome["rest_status"].append(rest_predict(rest_port, json_big, 120)[0])

    for call in (grpc_call, rest_call):
        for _ in range(rounds):
            threads = [threading.Thread(target=call) for _ in range(LIMIT)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        outcome[f"peak_after_{call.__name__}_mib"] = round(
            vm_kib(proc.pid, "VmHWM") / 1024, 1)
    peak = vm_kib(proc.pid, "VmHWM")
    in_flight = LIMIT * (REQUEST_MB << 20)
    return {"grpc_request_bytes": int(big.nbytes), "json_request_bytes": len(json_big),
            "concurrent": LIMIT, "rounds": rounds, **outcome,
            "idle_peak_rss_mib": round(idle / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
            "growth_mib": round((peak - idle) / 1024, 1),
            "max_in_flight_bytes_mib": in_flight >> 20,
            "growth_per_in_flight_byte": round((peak - idle) * 1024 / in_flight, 2),
            "bound_mib": round(idle / 1024 + RSS_BOUND * (in_flight >> 20), 1),
            "within_bound": peak * 1024 <= idle * 1024 + RSS_BOUND * in_flight}


def json_expansion() -> dict:
    """Bytes json.loads allocates per byte of body (float32 values as json.dumps writes them)."""
    out = {}
    for name, text in (("random_float32", json_body(1, 8)),
                       ("short_numbers", json.dumps([[0.5] * 4096] * 32).encode())):
        tracemalloc.start()
        doc = json.loads(text)
        allocated = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del doc
        out[name] = round(allocated / len(text), 1)
    return out


def write_report(out_dir: str, results: dict) -> None:
    o, s, m = results["overload"], results["slow_clients"], results["memory"]
    lines = [
        "# Server under load (bench/load.py)", "",
        f"Command: `{results['command']}`. Server: `vidgen-serve start` with "
        f"--max_in_flight_requests {LIMIT}, --max_request_bytes {REQUEST_MB} MiB, "
        f"--max_in_flight_bytes {LIMIT * REQUEST_MB} MiB, --max_json_request_bytes "
        f"{JSON_MB} MiB, --drain_seconds {DRAIN:g}; quick-preset model (64x64).", "",
        "## Overload", "",
        f"{o['clients']} gRPC clients ({o['clients'] // LIMIT}x the limit) for {o['seconds']} s: "
        f"{o['ok']} OK, {o['resource_exhausted']} RESOURCE_EXHAUSTED, {o['hangs']} hangs "
        f"(calls that ran into the {CLIENT_DEADLINE:g} s client deadline), "
        f"{o['other_errors']} other errors; "
        f"server alive after: {results['server_alive_after_overload']}. Accepted latency p50 "
        f"{o['accepted_p50_ms']} ms, p99 {o['accepted_p99_ms']} ms.", "",
        "## Slow clients", "",
        f"{s['connections']} REST connections sending a request line one byte per second "
        f"({s['bytes_sent_each']} bytes each) and {s['slow_body_connections']} sending full "
        f"headers (Content-Length {s['slow_body_content_length']}) then one body byte per "
        f"second ({s['body_bytes_sent_each']} body bytes each; {s['slow_body_connections']} "
        f"> --max_in_flight_requests {LIMIT}): a normal REST request answered "
        f"{s['normal_rest_request']['status']} in {s['normal_rest_request']['seconds']} s "
        f"(within its deadline: {s['normal_rest_request']['within_deadline']}) and a gRPC "
        f"one {s['normal_grpc_request']['status']} in {s['normal_grpc_request']['seconds']} s "
        f"(within: {s['normal_grpc_request']['within_deadline']}; deadline "
        f"{CLIENT_DEADLINE:g} s); "
        f"SIGTERM: exit code {s['sigterm_exit']['code']} after {s['sigterm_exit']['seconds']} s "
        f"(drain {DRAIN:g} s).", "",
        "## Memory", "",
        f"Peak RSS (VmHWM) {m['peak_rss_mib']} MiB after {LIMIT} concurrent gRPC requests of "
        f"{m['grpc_request_bytes'] >> 20} MiB and {LIMIT} REST bodies of "
        f"{m['json_request_bytes'] >> 10} KiB, {m['rounds']} round(s) each, on a fresh "
        "server (the first phase); idle (loaded, warm) "
        f"{m['idle_peak_rss_mib']} MiB; growth {m['growth_mib']} MiB = "
        f"{m['growth_per_in_flight_byte']} x --max_in_flight_bytes. Stated bound for this "
        f"model: peak RSS <= idle + {RSS_BOUND} x --max_in_flight_bytes = {m['bound_mib']} MiB "
        f"(within: {m['within_bound']}); the factor covers the request's copies (gRPC buffer, "
        "parsed proto, decoded array, TensorFlow's tensor) and the model's activations over "
        "a maximum-length context, so it depends on the model.", "",
        f"json.loads alone allocates {results['json_expansion']} bytes per body byte "
        "(random float32 values as json.dumps writes them; short numbers like 0.5), before "
        "the conversion to arrays: a 256 MiB JSON body (--max_request_bytes) would be ~2 GB "
        "of Python objects, a 32 MiB one (the --max_json_request_bytes default) ~250 MB.",
        ""]
    with open(os.path.join(out_dir, "REPORT.md"), "w") as f:
        f.write("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for results.json, REPORT.md")
    parser.add_argument("--smoke", action="store_true", help="3 s phases (under a minute)")
    args = parser.parse_args()
    seconds = 3.0 if args.smoke else 30.0
    os.makedirs(args.out, exist_ok=True)
    results = {"benchmark": "load", "command": "python -m bench.load --out DIR"
               + (" --smoke" if args.smoke else ""), "seconds": seconds}
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.dirname(export_quick(tmp))
        proc, port, rest_port = start(base)
        try:
            with PredictionClient(f"127.0.0.1:{port}", MODEL, timeout=120, retries=8) as c:
                c.predict(np.zeros((1, 2, 64, 64, 1), np.float32), 1)   # loaded and warm
            results["memory"] = memory(proc, port, rest_port, 1 if args.smoke else 3)
            print(json.dumps(results["memory"]), flush=True)
            results["overload"] = overload(port, seconds)
            results["server_alive_after_overload"] = proc.poll() is None
            print(json.dumps(results["overload"]), flush=True)
            results["slow_clients"] = slow_clients(proc, port, rest_port, seconds)
            print(json.dumps(results["slow_clients"]), flush=True)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results["json_expansion"] = json_expansion()
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()}
    write_json_atomic(os.path.join(args.out, "results.json"), results)
    write_report(args.out, results)
    print(open(os.path.join(args.out, "REPORT.md")).read())


if __name__ == "__main__":
    main()
