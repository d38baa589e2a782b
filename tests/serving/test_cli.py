"""`vidgen-serve start` as a process (start-up, SIGTERM drain) and `vidgen-serve predict`.

The drain test holds its request's model call in the server process (gated_serve.py)
until the drain has begun, so the request is in flight on any machine.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest

from serving.cli import main
from serving.client import PredictionClient
from serving.errors import ServingError
from tests.conftest import moving_square, write_mp4
from tests.serving.conftest import MODEL, clip, copy_version, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_process(exported, tmp_path):
    """`vidgen-serve start` in a process whose model calls the test can hold (gated_serve).

    Yields (process, gRPC port, banner lines, gate folder).
    """
    base = tmp_path / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    gate = tmp_path / "gate"
    gate.mkdir()
    env = dict(os.environ, PYTHONPATH=os.getcwd(), TF_CPP_MIN_LOG_LEVEL="2",
               VIDGEN_TEST_GATE=str(gate))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.serving.gated_serve", "start", "--model_base_path", str(base),
         "--model_name", MODEL, "--port", "0", "--rest_api_port", str(free_port()),
         "--file_system_poll_wait_seconds", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    port = None
    for line in proc.stdout:
        lines.append(line)
        m = re.search(r"gRPC on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        if "not implemented from TF Serving" in line:
            break
    assert port is not None, "".join(lines)
    yield proc, port, lines, gate
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def read_lines(proc, lines, wanted: str) -> threading.Event:
    """Appends the process's output to `lines` on a thread; the event is set at `wanted`."""
    seen = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if wanted in line:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    return seen


def refused(client) -> bool:
    """True once the server refuses a status call (it stopped accepting RPCs)."""
    try:
        client.status()
    except ServingError as e:
        return e.code == grpc.StatusCode.UNAVAILABLE
    return False


@pytest.mark.slow
def test_start_states_what_it_lacks_and_sigterm_drains(served_process):
    proc, port, lines, gate = served_process
    banner = "".join(lines)
    assert "REST on 127.0.0.1:" in banner
    assert "version policy 'latest' only" in banner and "no SSL" in banner
    client = PredictionClient(f"127.0.0.1:{port}", MODEL, timeout=60, retries=8)
    assert client.predict(clip(1, 2), 1).shape == (1, 1, 16, 16, 1)   # waits for the model
    stopping = read_lines(proc, lines, "finishing requests in flight")
    result = {}

    def long_request():
        try:
            result["frames"] = client.predict(clip(16, 3), 1000)
        except Exception as e:  # noqa: BLE001 - reported below
            result["error"] = e

    (gate / "hold").touch()   # from now on the server holds each model call
    thread = threading.Thread(target=long_request)
    thread.start()
    try:
        # In flight: the server is computing it (and holds it until released).
        assert wait_for(lambda: (gate / "entered").exists() or not thread.is_alive(), 60)
        assert "error" not in result, result.get("error")
        proc.send_signal(signal.SIGTERM)
        assert stopping.wait(60), "".join(lines)
        # The drain has begun: new calls are refused while the held one is still running.
        with PredictionClient(f"127.0.0.1:{port}", MODEL, timeout=5, retries=0) as probe:
            assert wait_for(lambda: refused(probe), 60)
    finally:
        (gate / "release").touch()
    thread.join(60)
    assert proc.wait(60) == 0
    assert "error" not in result, result.get("error")
    assert result["frames"].shape == (16, 1000, 16, 16, 1)
    assert wait_for(lambda: any("stopped" in line for line in lines), 60)
    out = "".join(lines)
    assert "finishing requests in flight" in out and "stopped" in out
    client.close()


def test_start_rejects_a_missing_base_path(tmp_path, capsys):
    code = main(["start", "--model_base_path", str(tmp_path / "nope"), "--model_name", "m"])
    assert code == 2
    assert "--model_base_path" in capsys.readouterr().err


def test_predict_command_writes_the_continuation(server, tmp_path, capsys, keras_models):
    video = write_mp4(tmp_path / "clip.mp4", moving_square(8, 32, 32, channels=3))
    out = str(tmp_path / "out.gif")
    code = main(["predict", "--target", f"127.0.0.1:{server.port}", "--model", MODEL,
                 "--input", video, "--context", "3", "--horizon", "4", "--out", out])
    assert code == 0, capsys.readouterr().err
    assert os.path.getsize(out) > 0
    assert os.path.exists(str(tmp_path / "out_compare.gif"))   # the clip was long enough
    assert "Predicted 4 frames after 3" in capsys.readouterr().out


def test_predict_command_reports_a_refusal(server, tmp_path, capsys):
    video = write_mp4(tmp_path / "clip.mp4", moving_square(4, 16, 16, channels=3))
    code = main(["predict", "--target", f"127.0.0.1:{server.port}", "--model", "nope",
                 "--input", video, "--context", "3", "--horizon", "2",
                 "--out", str(tmp_path / "o.gif")])
    assert code == 2
    assert ("failed: NOT_FOUND: Servable not found for request: Latest(nope)"
            in capsys.readouterr().err)


def test_predict_command_checks_arguments(tmp_path, capsys):
    assert main(["predict", "--input", "x.mp4", "--horizon", "0", "--out", "o.gif"]) == 2
    assert "--horizon must be in [1, 1000]. Received: 0" in capsys.readouterr().err
    assert main(["predict", "--input", "x.mp4", "--out", "o.txt"]) == 2
    assert "--out must end in .mp4, .gif or .png" in capsys.readouterr().err


def test_server_binds_localhost_by_default(server):
    assert server.host == "127.0.0.1"
    assert server._http.server_address[0] == "127.0.0.1"
    assert np.isfinite(server.port)


@pytest.mark.parametrize("flag", ["--max_in_flight_requests", "--max_in_flight_bytes",
                                  "--max_json_request_bytes", "--max_rest_connections"])
def test_start_checks_the_load_flags(exported, flag, capsys):
    code = main(["start", "--model_base_path", exported["store"], "--model_name", MODEL,
                 flag, "0"])
    assert code == 2
    assert f"{flag} must be positive. Received: 0" in capsys.readouterr().err


def test_start_refuses_fewer_in_flight_bytes_than_one_request(exported, capsys):
    code = main(["start", "--model_base_path", exported["store"], "--model_name", MODEL,
                 "--max_request_bytes", "1000", "--max_in_flight_bytes", "999"])
    assert code == 2
    assert "--max_in_flight_bytes must be at least --max_request_bytes" in (
        capsys.readouterr().err)


def test_start_help_says_the_load_flags_are_vidgens(capsys):
    with pytest.raises(SystemExit):
        main(["start", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--max_in_flight_requests", "--max_in_flight_bytes",
                 "--max_json_request_bytes", "--max_rest_connections", "--max_response_bytes"):
        assert flag in out
    assert out.count("vidgen's flag; TF Serving has none") == 5
