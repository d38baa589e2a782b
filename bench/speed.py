"""Cost measurements for `make bench`: matmul rate, latency per frame, cost vs clip length, memory.

Every timing is a median over repeated calls after a warm-up call (which
traces the function); the machine's own matmul rate, measured in the same
run, is the yardstick for the achieved GFLOP/s of training.

Peak memory is measured in separate processes, one per measurement, so
figures do not mix: each child reads its own peak resident set size from
/proc/self/status (VmHWM) when it ends. Training runs under `python -m
bench.speed peak FILE -- -m MODULE ...`, which runs the module in its own
process and writes the peak to FILE at exit. `python -m bench.speed memory
...` measures inference:

    python -m bench.speed memory idle                   # a process that imported TF and vidgen
    python -m bench.speed memory keras RUN_DIR          # + a Keras rollout, batch 1
    python -m bench.speed memory litert step.tflite     # LiteRT alone (no TensorFlow), 30 steps

This module imports TensorFlow, and the modules that import it
(vidgen.evaluate, vidgen.run_dir, bench.baselines), only inside functions:
the LiteRT probe stays a LiteRT-only process, as on a device, and a child
run under `peak` holds only what it imports itself. The LiteRT interpreter
is imported only by the LiteRT probe, for the same reason.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import runpy
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np

from export import contract as C  # numpy only: the LiteRT probe stays free of TensorFlow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ timing

def graph_function(fn, input_signature=None):
    """`tf.function` without AutoGraph: the timed functions are plain tensor code, and
    AutoGraph cannot read the source of a lambda that shares its line with another."""
    import tensorflow as tf

    return tf.function(fn, input_signature=input_signature, autograph=False)


def median_ms(call: Callable[[], Any], repeats: int = 10, min_seconds: float = 0.0,
              max_repeats: int = 1000) -> float:
    """Median wall time of `call()` in ms: one warm-up call, then `repeats` calls or more
    until `min_seconds` have passed (at most `max_repeats`)."""
    call()
    times = []
    start = time.perf_counter()
    while len(times) < max_repeats and (
            len(times) < repeats or time.perf_counter() - start < min_seconds):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000.0)


def matmul_rate(size: int = 2048, seconds: float = 3.0) -> dict[str, float]:
    """This machine's float32 matmul rate with TensorFlow on all cores, in GFLOP/s.

    A (size x size) @ (size x size) product is 2 * size^3 floating-point operations.
    """
    import tensorflow as tf

    a = tf.random.stateless_normal((size, size), seed=(1, 2))
    b = tf.random.stateless_normal((size, size), seed=(3, 4))

    def call():
        # Eager CPU ops run synchronously; reading one element makes sure the result exists.
        return tf.matmul(a, b)[0, 0].numpy()

    ms = median_ms(call, repeats=3, min_seconds=seconds)
    flops = 2.0 * size ** 3
    return {"size": size, "ms_per_matmul": round(ms, 2),
            "gflops_per_s": round(flops / (ms / 1000.0) / 1e9, 1)}


# ------------------------------------------------------------- model costs

def step_flops(model) -> int:
    """FLOPs of one streaming step (one frame in, the next frame out), batch 1."""
    import tensorflow as tf

    from vidgen.evaluate import graph_flops

    s, c = model.frame_size, model.channels
    shapes = [tuple(np.shape(x))[1:] for x in model.initial_states(1)]
    specs = [tf.TensorSpec((1, s, s, c), tf.float32)] + [
        tf.TensorSpec((1,) + tuple(int(d) for d in shape), tf.float32) for shape in shapes]

    def one_step(frame, *states):
        kwargs = {}
        if getattr(model, "noise_shape", None):
            kwargs["noise"] = tf.zeros((1,) + model.noise_shape)
        return model.step(frame, list(states), **kwargs)

    return graph_flops(one_step, specs)


def keras_latency(model, context: int, horizon: int, repeats: int = 10,
                  min_seconds: float = 1.0) -> dict[str, float]:
    """Keras, batch 1: one streaming step, and a context -> horizon rollout per predicted frame."""
    import tensorflow as tf

    s, c = model.frame_size, model.channels
    step = graph_function(lambda f, states: model.step(f, states))
    state = {"frame": tf.zeros((1, s, s, c)), "states": model.initial_states(1)}

    def one_step():
        state["frame"], state["states"] = step(state["frame"], state["states"])
        return state["frame"]

    clip = tf.random.stateless_uniform((1, context, s, s, c), seed=(5, 6))
    rollout = graph_function(lambda x: model.rollout(x, horizon))
    rollout_ms = median_ms(lambda: rollout(clip), max(2, repeats // 3), min_seconds)
    return {"step_ms": round(median_ms(one_step, repeats, min_seconds), 3),
            "rollout_ms_per_predicted_frame": round(rollout_ms / horizon, 3),
            "rollout_ms": round(rollout_ms, 2)}


def savedmodel_latency(path: str, context: int, horizon: int, repeats: int = 10,
                       min_seconds: float = 1.0) -> dict[str, float]:
    """A SavedModel written by export.savedmodel, loaded with tf.saved_model.load, batch 1:
    its `step` signature, and `serving_default` (context -> horizon) per predicted frame."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    step = loaded.signatures[C.STEP]
    inputs = step.structured_input_signature[1]
    feeds = {name: tf.zeros([1 if d is None else d for d in spec.shape], spec.dtype)
             for name, spec in inputs.items()}
    state_names = [n for n in feeds if n.startswith("state_")]

    def one_step():
        out = step(**feeds)
        feeds[C.FRAME] = out[C.NEXT_FRAME]
        for n in state_names:
            feeds[n] = out[n]
        return out

    frame = feeds[C.FRAME]
    clip = tf.random.stateless_uniform((1, context) + tuple(frame.shape[1:]), seed=(5, 6))
    serve = loaded.signatures[C.SERVING_DEFAULT]
    horizon_t = tf.constant(C.horizon_input(horizon, 1))
    rollout_ms = median_ms(lambda: serve(context=clip, horizon=horizon_t),
                           max(2, repeats // 3), min_seconds)
    return {"step_ms": round(median_ms(one_step, repeats, min_seconds), 3),
            "rollout_ms_per_predicted_frame": round(rollout_ms / horizon, 3),
            "rollout_ms": round(rollout_ms, 2)}


# ------------------------------------------------------ cost vs clip length

def streaming_ms_at(step: Callable[[Any, Any], tuple], frame, states, length: int,
                    timed: int = 5) -> float:
    """Per-frame cost of a streaming step after `length` frames: stream the clip, time the
    last `timed` steps (median). A streaming model's cost does not depend on `length`."""
    times = []
    for t in range(length):
        start = time.perf_counter()
        frame, states = step(frame, states)
        np.asarray(frame)
        if t >= length - timed:
            times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def rerun_ms_at(predict_next: Callable[[Any], Any], clip: np.ndarray, length: int,
                repeats: int = 2, min_seconds: float = 0.5) -> float:
    """Per-frame cost of re-running a model over all `length` frames seen so far to get the
    next one (the keras-io tutorial's loop)."""
    prefix = clip[:, :length]
    return median_ms(lambda: np.asarray(predict_next(prefix)), repeats, min_seconds,
                     max_repeats=20)


def cost_vs_length(series: dict[str, Callable[[int], float]],
                   lengths: Sequence[int]) -> dict[str, list[float]]:
    """{name: [per-frame ms at each length]} for named measuring functions of the length."""
    return {name: [round(measure(t), 3) for t in lengths] for name, measure in series.items()}


# ------------------------------------------------------------------ memory

def own_peak_mb() -> float:
    """This process's peak resident set size (VmHWM), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def run_child(python_args: list[str], log: Optional[str] = None, quiet: bool = False,
              env: Optional[dict] = None) -> dict[str, Any]:
    """Runs `python PYTHON_ARGS` ("-m module ..." or "-c code") in a child process to completion.

    Returns its exit code, wall time, peak RSS (MB) and stdout. stdout is captured (and
    copied to `log`); stderr goes to the terminal unless `quiet`.

    The peak is the child's own VmHWM, written at its exit by `python -m bench.speed peak`,
    which runs the module in the same process. (The parent's `wait4` figure, ru_maxrss,
    is not used: Linux carries the parent's resident set into a forked child's maximum
    across exec, so a child of a 1 GB process would report at least 1 GB.)
    """
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    fd, peak_file = tempfile.mkstemp(prefix="vidgen-peak-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "bench.speed", "peak", peak_file, "--", *python_args]
    start = time.perf_counter()
    # Commands log their progress to stderr: it goes to the log with the output.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet
                            else subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    lines = []
    sink = open(log, "w") if log else None
    try:
        for line in proc.stdout:
            lines.append(line)
            if sink:
                sink.write(line)
                sink.flush()
            if not quiet:
                print("    " + line.rstrip(), flush=True)
    finally:
        if sink:
            sink.close()
        proc.wait()
    try:
        with open(peak_file) as f:
            peak = json.load(f)["peak_rss_mb"]
    except (OSError, ValueError, KeyError):
        peak = None
    finally:
        os.remove(peak_file)
    return {"returncode": proc.returncode, "seconds": time.perf_counter() - start,
            "peak_rss_mb": peak, "stdout": "".join(lines)}


def _peak_main(peak_file: str, python_args: list[str]) -> None:
    """Runs `-m module args...` or `-c code` here; at exit writes this process's VmHWM."""
    def write_peak():
        with open(peak_file, "w") as f:
            json.dump({"peak_rss_mb": round(own_peak_mb(), 1)}, f)

    atexit.register(write_peak)
    if python_args[0] == "-c":
        sys.argv = ["-c", *python_args[2:]]
        exec(compile(python_args[1], "<string>", "exec"), {"__name__": "__main__"})
    elif python_args[0] == "-m":
        sys.argv = [python_args[1], *python_args[2:]]
        runpy.run_module(python_args[1], run_name="__main__", alter_sys=True)
    else:
        raise SystemExit(f"bench.speed peak runs -m MODULE or -c CODE. Received: {python_args}")


def probe_memory(kind: str, target: Optional[str] = None,
                 extra: Sequence[str] = ()) -> dict[str, Any]:
    """Runs `python -m bench.speed memory KIND [TARGET]` and returns its JSON line."""
    cmd = [sys.executable, "-m", "bench.speed", "memory", kind]
    if target:
        cmd.append(target)
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(cmd + list(extra), capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"memory probe {kind} {target or ''} failed "
                           f"(exit {result.returncode}): {result.stderr[-500:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _memory_main(args: list[str]) -> None:
    kind = args[0]
    if kind == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=args[1], num_threads=1)
        runner = interpreter.get_signature_runner("step")
        feeds = {name: np.zeros(d["shape"], d["dtype"])
                 for name, d in runner.get_input_details().items()}
        for _ in range(30):
            out = runner(**feeds)
            feeds = {n: out.get("next_frame" if n == "frame" else n, feeds[n]) for n in feeds}
        print(json.dumps({"kind": kind, "peak_rss_mb": round(own_peak_mb(), 1)}))
        return
    import tensorflow as tf

    import bench.baselines  # noqa: F401  (registers the tutorial model)
    import vidgen  # noqa: F401

    if kind == "idle":
        print(json.dumps({"kind": kind, "peak_rss_mb": round(own_peak_mb(), 1)}))
        return
    if kind != "keras":
        raise SystemExit(f"unknown memory probe {kind!r}")
    from vidgen.run_dir import load_run

    cfg, model = load_run(args[1])
    context, horizon = cfg.data.context, cfg.data.horizon
    s, c = cfg.data.frame_size, cfg.data.channels
    rollout = graph_function(lambda x: model.rollout(x, horizon))
    clip = tf.random.stateless_uniform((1, context, s, s, c), seed=(5, 6))
    for _ in range(3):
        np.asarray(rollout(clip))
    print(json.dumps({"kind": kind, "peak_rss_mb": round(own_peak_mb(), 1)}))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "peak" and sys.argv[3] == "--":
        _peak_main(sys.argv[2], sys.argv[4:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "memory":
        _memory_main(sys.argv[2:])
    else:
        raise SystemExit(__doc__)
