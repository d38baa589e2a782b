"""bench/results.json -> bench/REPORT.md, bench/plots/*.png and the README's results table.

`python -m bench.run` calls this at its end; run it alone to redraw the
report or rewrite the README table from an existing results.json:

    python -m bench.report [--results bench/results.json] [--readme README.md]

The README table sits between the markers `<!-- bench:start -->` and
`<!-- bench:end -->`; everything between them is replaced.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import matplotlib
import matplotlib.pyplot as plt

from vidgen import fileio, viz

matplotlib.use("Agg")   # the plots are files: no display needed

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
MODEL_ORDER = ("quick", "quick_unfloored", "gan", "gan_unfloored", "tutorial", "copy_last",
               "black")
LABELS = {"quick": "vidgen `quick`", "gan": "vidgen `quick_gan` (GAN)",
          "quick_unfloored": "vidgen `quick`, output floor off",
          "gan_unfloored": "vidgen `quick_gan`, output floor off",
          "tutorial": "keras-io tutorial ConvLSTM (causal)", "copy_last": "copy last frame",
          "black": "all-black frame"}
HEADLINE_TEXT = {
    "quick_mse_vs_tutorial": "MSE, `quick` / tutorial ConvLSTM (same budget)",
    "quick_ssim_minus_tutorial": "SSIM, `quick` minus tutorial ConvLSTM",
    "quick_mse_vs_best_baseline": "MSE, `quick` / better trivial baseline",
    "gan_mse_vs_best_baseline": "MSE, `quick_gan` / better trivial baseline",
    "tutorial_mse_vs_best_baseline": "MSE, tutorial / better trivial baseline",
    "gan_mse_vs_quick": "MSE, `quick_gan` / `quick`",
    "gan_sharpness_vs_quick": "sharpness, `quick_gan` / `quick`",
    "tutorial_flops_vs_quick": "training FLOPs per sequence, tutorial / `quick`",
    "quick_training_throughput_vs_tutorial": "training sequences/s, `quick` / tutorial",
    "quick_training_fraction_of_matmul_rate": "`quick` training GFLOP/s / matmul GFLOP/s",
    "tflite_int8_vs_float32_speed_1_thread": "TFLite step speed, int8 / float32 (1 thread)",
    "tflite_int8_vs_float32_size": "TFLite size, int8 / float32",
    "tflite_float32_vs_keras_step_speed": "step speed, TFLite float32 (1 thread) / Keras",
    "matmul_rate_end_vs_start": "matmul rate at the end / at the start (1 = steady machine)",
}


def _label_scaling(key: str) -> Optional[str]:
    for prefix, text in (
            ("tutorial_rerun_vs_quick_streaming_at_T", "per-frame cost at T={}, tutorial re-run"
                                                       " / `quick` streaming"),
            ("quick_rerun_vs_quick_streaming_at_T", "per-frame cost at T={}, `quick` re-run / "
                                                    "`quick` streaming"),
            ("tutorial_rerun_vs_tutorial_streaming_at_T", "per-frame cost at T={}, tutorial "
                                                          "re-run / tutorial streaming")):
        if key.startswith(prefix):
            return text.format(key[len(prefix):])
    if key.startswith("quick_rerun_cost_T"):
        a, b = key[len("quick_rerun_cost_T"):].split("_vs_T")
        return f"`quick` re-run per-frame cost, T={a} / T={b}"
    return None


def headline_label(key: str) -> str:
    return HEADLINE_TEXT.get(key) or _label_scaling(key) or key


def fmt_ratio(value) -> str:
    """Ratios with three significant digits (0.665, 73.9, 1.13; 1950 rather than 1.95e+03)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return fmt(value)
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _minutes(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min"


# ------------------------------------------------------------------- plots

def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.tight_layout()
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_quality(quality: Mapping[str, Any], metric: str, ylabel: str, path: str) -> str:
    curves = {LABELS[k]: quality["rows"][k][metric]["per_step"] for k in MODEL_ORDER
              if k in quality["rows"]}
    return viz.plot_curves(path, curves, title=f"{ylabel} per predicted frame "
                           f"({quality['clips']} test clips)", ylabel=ylabel)


def plot_cost_vs_length(scaling: Mapping[str, Any], path: str) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for name, values in scaling["ms_per_frame"].items():
        ax.plot(scaling["lengths"], values, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(scaling["lengths"], [str(t) for t in scaling["lengths"]])
    ax.set_xlabel("frames seen so far (T)")
    ax.set_ylabel("ms to the next frame (log)")
    ax.set_title("Per-frame cost: streaming step vs re-running the clip")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_bars(values: Mapping[str, float], xlabel: str, title: str, path: str,
              log: bool = True) -> str:
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(values) + 1.2), dpi=100)
    names = list(values)[::-1]
    ax.barh(names, [values[n] for n in names])
    for i, n in enumerate(names):
        ax.text(values[n], i, f" {values[n]:.3g}", va="center", fontsize=8)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


# ---------------------------------------------------------------- sections

def quality_markdown(name: str, q: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    rows = q["rows"]
    lines = [f"### {name}: {q['clips']} held-out test clips, {q['context']} -> {q['horizon']} "
             f"frames, {q['frame_size']}x{q['frame_size']}", ""]
    body = []
    for k in MODEL_ORDER:
        if k not in rows:
            continue
        r = rows[k]
        t = r.get("training") or {}
        trained = "-"
        if t:
            steps = t.get("steps")
            trained = _minutes(t.get("train_seconds"))
            if steps:
                trained += f", {steps} step{'s' if steps != 1 else ''}"
            elif t.get("epochs_run"):
                trained += f", {t['epochs_run']} epoch{'s' if t['epochs_run'] != 1 else ''}"
            if not r.get("trained_in_this_run", True):
                trained += " (reused run)"
        params = f"{r['parameters']:,}" if r.get("parameters") else "-"
        gflops = fmt(r["flops_per_sequence"] / 1e9) if r.get("flops_per_sequence") else "-"
        body.append([LABELS[k], fmt(r["mse"]["mean"], 1), fmt(r["mae"]["mean"], 1),
                     fmt(r["psnr"]["mean"]), fmt(r["ssim"]["mean"], 3),
                     fmt(r["ssim_uniform7"]["mean"], 3), fmt(r["sharpness"]["mean"], 3),
                     params, gflops, trained])
    lines.append(table(["", "MSE / frame", "MAE / frame", "PSNR", "SSIM", "SSIM (7x7)",
                        "sharpness", "parameters", "GFLOPs / rollout", "trained"], body,
                       "lrrrrrrrrl"))
    lines += ["", "Per predicted step (t+1 ... t+{}):".format(q["horizon"]), ""]
    steps = range(1, q["horizon"] + 1)
    per_step = []
    for metric, digits in (("psnr", 2), ("ssim", 3), ("mse", 1)):
        for k in MODEL_ORDER:
            if k in rows:
                per_step.append([f"{metric.upper()} {LABELS[k]}"]
                                + [fmt(v, digits) for v in rows[k][metric]["per_step"]])
    lines.append(table(["step", *[str(s) for s in steps]], per_step))
    for key in ("mse", "psnr", "ssim"):
        if key in plots:
            lines += ["", f"![{key} per step]({plots[key]})"]
    steps = (rows.get("tutorial", {}).get("training") or {}).get("steps")
    if steps:
        lines += ["", f"The tutorial model took {steps} optimizer steps of 5 clips in its budget "
                  "(the tutorial itself trains up to 3,600: 20 epochs of 180). Its BatchNorm "
                  "layers normalise with moving averages at inference, and after so few steps "
                  "those still weigh "
                  f"their initial values (mean 0, variance 1) by 0.99^{steps} = "
                  f"{0.99 ** steps:.2f} (Keras' default momentum): part of what a short "
                  "budget costs this architecture."]
    if "stochastic" in rows.get("gan", {}) and rows["gan"]["stochastic"]:
        s = rows["gan"]["stochastic"]
        lines += ["", f"`quick_gan` over {s['samples']} sampled futures per clip: best-of-"
                  f"{s['samples']} PSNR {s['psnr_best']:.2f} (mean {s['psnr_mean']:.2f}), "
                  f"SSIM {s['ssim_best']:.3f} (mean {s['ssim_mean']:.3f}), diversity "
                  f"(per-frame MSE between samples) {s['diversity_mse']:.1f}."]
    if q.get("gan_vs_deterministic"):
        c = q["gan_vs_deterministic"]
        lines += ["", "The GAN's criteria (bench/gan_vs_deterministic.py): sharpness closer "
                  f"to real: {'yes' if c['gan_sharpness_closer_to_real'] else 'no'}; MSE within "
                  f"10% of `quick`: {'yes' if c['gan_mse_within_10_percent'] else 'no'} "
                  f"(ratio {c['gan_mse_ratio']:.3f})"
                  + (f"; best-of-N SSIM >= deterministic SSIM: "
                     f"{'yes' if c['best_of_n_ssim_at_least_deterministic'] else 'no'}"
                     if "best_of_n_ssim_at_least_deterministic" in c else "") + "."]
    if q.get("samples_png"):
        order = ", ".join(LABELS[k] for k in ("quick", "gan", "tutorial") if k in rows)
        lines += ["", f"Test clips, rows: truth, then {order} (first {q['context']} frames "
                  "are the context):", "", f"![samples]({q['samples_png']})"]
    return lines


def speed_markdown(results: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    sp = results["speed"]
    digits = results["datasets"]["digits"]
    context, horizon = digits["context"], digits["horizon"]
    request = f"{context} -> {horizon}"
    mm = results["matmul"]
    lines = ["## 2. Speed and cost", ""]
    start, end = mm.get("start", {}), mm.get("end", {})
    lines += [f"This machine's float32 matmul rate ({start.get('size')}x{start.get('size')}, "
              f"TensorFlow, all cores): {fmt(start.get('gflops_per_s'), 1)} GFLOP/s at the start "
              f"of the run, {fmt(end.get('gflops_per_s'), 1)} at the end.", ""]
    tr = sp.get("training", {})
    if tr:
        lines += ["### Training throughput", "",
                  "Inside training steps (the first batch of every epoch, which traces, is "
                  "left out). FLOPs are profiled with TF's profiler on frozen graphs, batch 1: "
                  "one streaming step, times the "
                  f"{context + horizon - 1} steps of a {context + horizon}-frame training "
                  "sequence, every one of which is decoded and scored in training (a "
                  f"{request} rollout costs less, the quality table's GFLOPs/seq: TensorFlow "
                  "prunes the unused decoder outputs on context frames). A training step is "
                  "counted as 3x forward (forward + backward), so achieved GFLOP/s = 3 x "
                  "forward FLOPs x sequences/s. The GAN's figure counts the generator only (the "
                  "critics' work is left out), so it is a lower bound.", ""]
        body = [[LABELS[k], fmt(t["sequences_per_second"], 2),
                 fmt(t["forward_gflops_per_sequence"], 2),
                 fmt(t["train_gflops_per_sequence"], 2), fmt(t["achieved_gflops_per_s"], 1),
                 f"{100 * t['fraction_of_matmul_rate']:.0f}%" if t["fraction_of_matmul_rate"]
                 is not None else "-", _minutes(t.get("train_seconds"))]
                for k, t in tr.items()]
        lines.append(table(["", "sequences/s", "GFLOPs/seq forward", "GFLOPs/seq training",
                            "achieved GFLOP/s", "of matmul rate", "trained"], body))
        if "training" in plots:
            lines += ["", f"![training throughput]({plots['training']})"]
        lines.append("")
    inf = sp.get("inference", {})
    if inf:
        lines += ["### Inference per frame (batch 1)", "",
                  "`step`: one streaming step (one frame in, the next frame out, states kept). "
                  f"`{request} / {horizon}`: a whole request (observe the context, predict the "
                  "horizon) divided by the predicted frames.", ""]
        body = []
        for k, v in inf.get("keras", {}).items():
            body.append([f"{LABELS[k]}, Keras", fmt(v["step_ms"], 2),
                         fmt(v["rollout_ms_per_predicted_frame"], 2),
                         fmt(sp.get("step_gflops", {}).get(k), 3)])
            if "rerun_rollout_ms_per_predicted_frame" in v:
                body.append([f"{LABELS[k]}, Keras, re-run per frame (the tutorial's loop)", "-",
                             fmt(v["rerun_rollout_ms_per_predicted_frame"], 1), "-"])
        for k, v in inf.get("savedmodel", {}).items():
            body.append([f"{LABELS[k]}, SavedModel (tf.saved_model.load)", fmt(v["step_ms"], 2),
                         fmt(v["rollout_ms_per_predicted_frame"], 2), "-"])
        for k, rep in inf.get("tflite", {}).items():
            for q, v in rep["variants"].items():
                for n in ("1", "2"):
                    body.append([f"{LABELS[k]}, TFLite {q}, LiteRT {n} thread"
                                 f"{'s' if n != '1' else ''}", fmt(v["step_ms"][n], 2), "-", "-"])
        lines.append(table(["", "ms / step", f"ms / predicted frame ({request} / {horizon})",
                            "GFLOPs / step"], body))
        for k, rep in inf.get("tflite", {}).items():
            lines += ["", f"TFLite step models of {LABELS[k]} against Keras on "
                      f"{rep['clips']} test clips (export/report.py):", ""]
            body = [[q, f"{v['size_bytes'] / 1024:.0f}", f"{v['max_abs_diff']:.1e}",
                     fmt(v["psnr"]), fmt(v["ssim"], 3), f"{v['ssim_drop']:+.3f}"]
                    for q, v in rep["variants"].items()]
            lines.append(table(["variant", "KB", "max abs diff vs Keras", "PSNR", "SSIM",
                                "SSIM drop"], body))
        if "inference" in plots:
            lines += ["", f"![inference latency]({plots['inference']})"]
        lines.append("")
    sc = sp.get("cost_vs_length")
    if sc:
        lines += ["### Cost vs clip length", "",
                  "Milliseconds to the next frame after T frames: a streaming step (the state "
                  "carries the past) against re-running the model over all T frames, which is "
                  "how the keras-io tutorial predicts.", ""]
        body = [[name, *[fmt(v, 2) for v in values]]
                for name, values in sc["ms_per_frame"].items()]
        lines.append(table(["", *[f"T={t}" for t in sc["lengths"]]], body))
        if "scaling" in plots:
            lines += ["", f"![cost vs length]({plots['scaling']})"]
        lines.append("")
    mem = sp.get("memory")
    if mem:
        lines += ["### Peak memory", "",
                  "Peak resident set size of separate processes (ru_maxrss / VmHWM), MB. A "
                  f"process that only imported TensorFlow and vidgen peaks at "
                  f"{fmt(mem['idle_tensorflow_process_mb'], 0)} MB.", ""]
        body = [[f"training {LABELS[k]}", fmt(v["peak_rss_mb"], 0), v["measured"]]
                for k, v in mem["training"].items()]
        body += [[f"inference {LABELS[e['model']]}, {e['runtime']}", fmt(e["peak_rss_mb"], 0),
                  "its own process"] for e in mem["inference"]]
        lines.append(table(["", "peak MB", "measured"], body, "lrl"))
        lines.append("")
    pipe = sp.get("pipeline")
    if pipe:
        lines += ["### Input pipeline", "",
                  f"`make_dataset`, batch {pipe['batch']}: {fmt(pipe['prepared_clips_per_s'], 0)} "
                  f"clips/s from prepared shards, {fmt(pipe['generator_clips_per_s'], 0)} straight "
                  "from the synthetic generator (bench/data_pipeline.py).", ""]
    return lines


def markdown(results: Mapping[str, Any], plots: Mapping[str, Any]) -> str:
    m, v, g = results["machine"], results["versions"], results["git"]
    s = results["settings"]
    lines = ["# vidgen benchmark report", "",
             f"Made by `{results['command']}` ({results['mode']} run) on {results['created']}, "
             f"commit `{(g.get('commit') or 'unknown')[:12]}`"
             + (" with uncommitted changes" if g.get("dirty") else "") + f", in "
             f"{results['total_seconds'] / 60:.1f} min. Machine: {m['cpu']}, {m['cores']} cores, "
             f"{m['ram_gb']} GB RAM, load average {m['load_average_at_start'][0]:.2f} at the "
             f"start and {m.get('load_average_at_end', [0])[0]:.2f} at the end. Python "
             f"{v['python']}, TensorFlow {v['tensorflow']}, Keras {v['keras']}, LiteRT "
             f"{v['ai-edge-litert']}. Every figure is in `results.json`.", "",
             "Absolute times depend on the machine and on what else runs on it; the ratios "
             "below are the headline.", ""]
    if results.get("note"):
        lines += [f"**Note**: {results['note']}", ""]
    if results["mode"] == "smoke":
        lines += ["**Smoke run**: tiny budgets and shapes; the figures check the code, they "
                  "say nothing about the models.", ""]
    lines += ["## Headline", "", table(["ratio", "value"], [
        [headline_label(k), fmt_ratio(val)] for k, val in results["headline"].items()]), ""]
    reused = [k for k in MODEL_ORDER if any(
        q["rows"].get(k, {}).get("trained_in_this_run") is False
        for q in results["datasets"].values())]
    lines += ["## 1. Quality at equal budget", ""]
    if reused:
        lines += [f"**Reused runs** ({', '.join(LABELS[k] for k in reused)}): they were not "
                  "trained in this run, so their budget is what the column 'trained' says, "
                  "not necessarily the others'.", ""]
    lines += [f"Each model trained for the same wall-clock budget of {s['budget_min']:g} min "
              "in its own process, on the same prepared shards, one after the other "
              "(`quick` and `quick_gan` with `vidgen train`, their presets otherwise "
              "unchanged, so the cosine schedule is cut by the budget; the tutorial model as "
              "the tutorial trains it: teacher forcing, binary cross-entropy, Adam 1e-3, batch "
              "5, no validation). All are scored by `vidgen.evaluate` on the same first "
              "test clips, autoregressively (never a true frame after the context); the "
              "tutorial model's rollout is computed streaming, which gives the frames of its "
              "re-run loop (tested equal) at a fraction of the cost. MSE/MAE are per-frame "
              "sums over pixels (OpenSTL); sharpness is the gradient magnitude of predicted "
              "over true frames (1 = as sharp as reality).", ""]
    for name, q in results["datasets"].items():
        lines += quality_markdown(name, q, plots.get("quality", {}).get(name, {})) + [""]
    lines += speed_markdown(results, plots)
    lines += ["## Run", "", table(["phase", "seconds"],
                                  [[p["phase"], fmt(p["seconds"], 1)] for p in results["phases"]]),
              "", f"Settings: `{json.dumps(s)}`", ""]
    return "\n".join(lines)


def write_report(results: Mapping[str, Any], out: str) -> str:
    """Draws the plots into OUT/plots and writes OUT/REPORT.md; returns the Markdown."""
    plot_dir = os.path.join(out, "plots")
    plots: dict[str, Any] = {"quality": {}}
    for name, q in results["datasets"].items():
        plots["quality"][name] = {}
        for metric, label in (("mse", "MSE per frame"), ("psnr", "PSNR (dB)"), ("ssim", "SSIM")):
            path = plot_quality(q, metric, label, os.path.join(plot_dir,
                                                               f"{metric}_per_step_{name}.png"))
            plots["quality"][name][metric] = os.path.relpath(path, out)
    sp = results["speed"]
    if sp.get("cost_vs_length"):
        plots["scaling"] = os.path.relpath(plot_cost_vs_length(
            sp["cost_vs_length"], os.path.join(plot_dir, "cost_vs_length.png")), out)
    if sp.get("training"):
        values = {LABELS[k]: t["sequences_per_second"] for k, t in sp["training"].items()
                  if t["sequences_per_second"]}
        if values:
            plots["training"] = os.path.relpath(plot_bars(
                values, "training sequences per second (log)", "Training throughput",
                os.path.join(plot_dir, "training_throughput.png")), out)
    inf = sp.get("inference", {})
    if inf:
        values = {f"{LABELS[k]}, Keras": v["step_ms"] for k, v in inf.get("keras", {}).items()}
        values.update({f"{LABELS[k]}, SavedModel": v["step_ms"]
                       for k, v in inf.get("savedmodel", {}).items()})
        for k, rep in inf.get("tflite", {}).items():
            for q, v in rep["variants"].items():
                for n in ("1", "2"):
                    values[f"{LABELS[k]}, TFLite {q}, {n} thr"] = v["step_ms"][n]
        plots["inference"] = os.path.relpath(plot_bars(
            values, "ms per streaming step, batch 1 (log)", "Inference per frame",
            os.path.join(plot_dir, "inference_step_ms.png")), out)
    md = markdown(results, plots)
    fileio.write_bytes_atomic(os.path.join(out, "REPORT.md"), md.encode())
    return md


# ------------------------------------------------------------------ README

def readme_table(results: Mapping[str, Any], out_rel: str = "bench") -> str:
    """The README's results block: command, machine, one table, the headline ratios."""
    q = results["datasets"]["digits"]
    sp = results["speed"]
    tr, keras = sp.get("training", {}), sp.get("inference", {}).get("keras", {})
    m = results["machine"]
    body = []
    for k in MODEL_ORDER:
        r = q["rows"].get(k)
        if r is None:
            continue
        t = tr.get(k, {})
        body.append([LABELS[k], fmt(r["mse"]["mean"], 1), fmt(r["psnr"]["mean"]),
                     fmt(r["ssim"]["mean"], 3), fmt(r["sharpness"]["mean"], 2),
                     fmt(t.get("sequences_per_second"), 2),
                     fmt(r["flops_per_sequence"] / 1e9, 2) if r.get("flops_per_sequence")
                     else "-", fmt(keras.get(k, {}).get("step_ms"), 1)])
    h = results["headline"]
    picks = [k for k in h if k in (
        "quick_mse_vs_tutorial", "quick_mse_vs_best_baseline", "gan_mse_vs_quick",
        "tutorial_flops_vs_quick", "quick_training_throughput_vs_tutorial",
        "tflite_int8_vs_float32_speed_1_thread", "tflite_int8_vs_float32_size",
        "quick_training_fraction_of_matmul_rate", "matmul_rate_end_vs_start")
        or k.startswith("tutorial_rerun_vs_quick_streaming_at_T")]
    lines = [
        f"`{results['command']}` on {results['created'][:10]}: {m['cores']} cores "
        f"({m['cpu']}), budget {results['settings']['budget_min']:g} min of training per "
        f"model, {q['clips']} held-out test clips ({q['context']} -> {q['horizon']}, "
        f"{q['frame_size']}x{q['frame_size']}, synthetic digits), "
        f"{results['total_seconds'] / 60:.0f} min in all. Full report: "
        f"[`{out_rel}/REPORT.md`]({out_rel}/REPORT.md); every figure: `{out_rel}/results.json`."
        + (f" **{results['note']}**" if results.get("note") else ""),
        "",
        table(["", "MSE / frame", "PSNR", "SSIM", "sharpness", "train seq/s", "GFLOPs / rollout",
               "ms / step (Keras)"], body),
        "",
        table(["ratio", "value"], [[headline_label(k), fmt_ratio(h[k])] for k in picks]),
    ]
    return "\n".join(lines)


def replace_between_markers(text: str, block: str) -> str:
    """`text` with everything between the bench markers replaced by `block`."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"Expected one {START} followed by one {END} in the README.")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block.strip()}\n{END}{tail}"


def update_readme(path: str, results: Mapping[str, Any], out_rel: str = "bench") -> str:
    """Rewrites the results table between the bench markers of the README at `path`."""
    with open(path) as f:
        text = f.read()
    text = replace_between_markers(text, readme_table(results, out_rel))
    fileio.write_bytes_atomic(path, text.encode())
    return path


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.path.join("bench", "results.json"))
    parser.add_argument("--readme", default=None, help="also rewrite this README's table")
    args = parser.parse_args(argv)
    with open(args.results) as f:
        results = json.load(f)
    out = os.path.dirname(os.path.abspath(args.results))
    write_report(results, out)
    if args.readme:
        update_readme(args.readme, results, os.path.relpath(
            out, os.path.dirname(os.path.abspath(args.readme))))
    print(f"Wrote {out}/REPORT.md" + (f" and the table in {args.readme}" if args.readme else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
