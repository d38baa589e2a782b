"""REST fuzzing at benchmark size: tests/serving/test_fuzz_rest.py with thousands of requests.

Runs the hypothesis test against a real server on 127.0.0.1 over one keep-alive
connection (no crash, no dropped connection, every /v1/ answer JSON with a
status, no 500) and prints the outcome by HTTP status as JSON.

    python -m bench.fuzz_rest                    # 5000 requests
    python -m bench.fuzz_rest --requests 20000 --out runs/fuzz_rest.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(requests: int) -> dict:
    """Runs the REST fuzz test with `requests` examples; its outcome as a dict."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2",
               VIDGEN_FUZZ_EXAMPLES=str(requests))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                             "tests/serving/test_fuzz_rest.py::"
                             "test_fuzzed_rest_requests_always_answer_json"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    found = re.search(r"REST fuzz outcome by status: (\{.*?\}) reconnections \(the server "
                      r"closed\): (\d+)", result.stdout)
    return {"requests": requests, "passed": result.returncode == 0,
            "outcome_by_status": ({int(k): v for k, v in json.loads(
                re.sub(r"(\d+):", r'"\1":', found.group(1))).items()} if found else None),
            "reconnections": int(found.group(2)) if found else None,
            "seconds": round(seconds, 1),
            "requests_per_second": round(requests / seconds, 1),
            "failure": None if result.returncode == 0 else result.stdout[-4000:],
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="fuzzed requests")
    parser.add_argument("--out", help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    report = run(args.requests)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
