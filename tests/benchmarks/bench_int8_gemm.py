"""What int8 can give the encoder on this CPU: float32 against dynamic int8 matrix products in
ONNX Runtime, at the encoder's own shapes (issue #16's limit measurement).

    uv run python tests/benchmarks/bench_int8_gemm.py --out docs/benchmarks/int8_gemm.json

Three parts:

1. The CPU's flags that decide which int8 kernels ONNX Runtime (MLAS) can use: AVX2 only,
   AVX-VNNI, AVX-512 VNNI, AMX.
2. The weight products of one MiniLM layer (hidden 384, intermediate 1536: the four attention
   projections 384→384, the FFN up-projection 384→1536 and down-projection 1536→384) for a
   single query (32 tokens), a batch of 32 queries and a batch of 8 documents of 300 tokens.
   Each contender is a tiny ONNX graph built with ``onnx.helper``: eight products of one shape
   side by side, each with its own input and weights (so the weights stream from memory as in
   a real encoder, and one ``run`` call's overhead is spread over eight products): float32
   ``MatMul``, and the graph ``quantize_dynamic`` produces for int8 (``DynamicQuantizeLinear``
   on the input, ``MatMulInteger`` with per-channel int8 weights, the two scales multiplied
   back in; ONNX Runtime fuses all of it into one ``DynamicQuantizeMatMul`` per product). Each
   product quantizes its own input, as each weight product of a layer does. Both run at 1 and 2
   threads, samples alternating between the two (order swapped every round), medians reported.
3. The share of the exported ``offline-minilm`` encoder's time (``backend="onnx"``, float32)
   spent in matrix products, from ONNX Runtime's profiler, for a query and for a document
   batch. With that share ``g`` and a product speed-up ``s``, the encoder can at best speed up
   by ``1 / ((1 - g) + g / s)``: the table says what ``s`` the #16 targets would need.

Not part of any test run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

HIDDEN, INTERMEDIATE = 384, 1536
# name -> (K, N): the weight products of one BERT layer, and how many of each a layer has.
PRODUCTS = {"attention projection": (HIDDEN, HIDDEN, 4), "FFN up": (HIDDEN, INTERMEDIATE, 1),
            "FFN down": (INTERMEDIATE, HIDDEN, 1)}
WORKLOADS = {"1 query (32 tokens)": 32, "32 queries (32 tokens)": 32 * 32,
             "8 documents (300 tokens)": 8 * 300}
COPIES = 8
FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
         "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_flags() -> dict[str, bool]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    line = next((row for row in text.splitlines() if row.startswith("flags")), "")
    present = set(line.split(":", 1)[-1].split())
    return {flag: flag in present for flag in FLAGS}


def cpu_name() -> str:
    path = Path("/proc/cpuinfo")
    if path.exists():
        for row in path.read_text().splitlines():
            if row.startswith("model name"):
                return row.split(":", 1)[1].strip()
    return platform.processor()


def graph(m: int, k: int, n: int, int8: bool, seed: int) -> bytes:
    """``COPIES`` products ``X_i (m x k) · W_i (k x n)``, float32 or dynamic int8."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, outputs = [], [], []
    for i in range(COPIES):
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        out = f"Y{i}"
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [m, n]))
        if not int8:
            inits.append(numpy_helper.from_array(w, f"W{i}"))
            nodes.append(helper.make_node("MatMul", [f"X{i}", f"W{i}"], [out]))
            continue
        # Per output channel int8 weights, as colbridge's onnx-int8 recipe quantizes them.
        scale = np.abs(w).max(axis=0) / 127.0
        wq = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        inits += [numpy_helper.from_array(wq, f"Wq{i}"),
                  numpy_helper.from_array(scale.astype(np.float32), f"Ws{i}"),
                  numpy_helper.from_array(np.zeros(n, np.int8), f"Wz{i}")]
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [f"X{i}"],
                             [f"Xq{i}", f"Xs{i}", f"Xz{i}"]),
            helper.make_node("MatMulInteger", [f"Xq{i}", f"Wq{i}", f"Xz{i}", f"Wz{i}"],
                             [f"A{i}"]),
            helper.make_node("Cast", [f"A{i}"], [f"Af{i}"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"Xs{i}", f"Ws{i}"], [f"S{i}"]),
            helper.make_node("Mul", [f"Af{i}", f"S{i}"], [out]),
        ]
    model = helper.make_model(
        helper.make_graph(nodes, "products", [helper.make_tensor_value_info(
            f"X{i}", TensorProto.FLOAT, [m, k]) for i in range(COPIES)], outputs, inits),
        opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def session(model: bytes | str, threads: int, profile: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as colbridge
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def sample(sess, feed: dict, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        sess.run(None, feed)
    return (time.perf_counter() - started) / calls


def compare_products(threads_list: list[int], rounds: int, budget: float) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for workload, m in WORKLOADS.items():
        for product, (k, n, per_layer) in PRODUCTS.items():
            x = rng.standard_normal((m, k)).astype(np.float32)
            for threads in threads_list:
                sessions = {"float32": session(graph(m, k, n, False, 1), threads),
                            "int8": session(graph(m, k, n, True, 1), threads)}
                feed = {f"X{i}": x for i in range(COPIES)}
                exact = sessions["float32"].run(None, feed)[0]
                approx = sessions["int8"].run(None, feed)[0]
                error = float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))
                once = min(sample(s, feed, 3) for s in sessions.values())
                calls = max(1, int(budget / max(once, 1e-6)))
                times = {name: [] for name in sessions}
                for r in range(rounds):
                    order = list(sessions) if r % 2 == 0 else list(reversed(sessions))
                    for name in order:
                        times[name].append(sample(sessions[name], feed, calls) / COPIES)
                fp32, int8 = (statistics.median(times[name]) for name in ("float32", "int8"))
                row = {"workload": workload, "rows": m, "product": product, "k": k, "n": n,
                       "per_layer": per_layer, "threads": threads,
                       "float32_us": fp32 * 1e6, "int8_us": int8 * 1e6,
                       "int8_speedup": fp32 / int8,
                       "float32_gflops": 2 * m * k * n / fp32 / 1e9,
                       "int8_relative_error": error, "samples": rounds}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def per_layer(rows: list[dict]) -> list[dict]:
    """Time of one layer's six weight products, float32 and int8, per workload and threads."""
    out = []
    keys = sorted({(r["workload"], r["threads"]) for r in rows}, key=lambda t: (
        list(WORKLOADS).index(t[0]), t[1]))
    for workload, threads in keys:
        mine = [r for r in rows if (r["workload"], r["threads"]) == (workload, threads)]
        fp32 = sum(r["float32_us"] * r["per_layer"] for r in mine)
        int8 = sum(r["int8_us"] * r["per_layer"] for r in mine)
        out.append({"workload": workload, "threads": threads, "float32_us": fp32,
                    "int8_us": int8, "int8_speedup": fp32 / int8})
    return out


GEMM_OPS = {"MatMul", "Gemm", "FusedMatMul", "MatMulInteger", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat", "QGemm"}


def encoder_profile(threads: int, repeats: int) -> dict:
    """Share of the float32 encoder's node time by operator, from ONNX Runtime's profiler."""
    from colbridge import ColBERTModel

    model = ColBERTModel("offline-minilm", backend="onnx")
    runtime = model.load()
    graph_path = str(Path(runtime.folder) / "model.onnx")
    result = {}
    with tempfile.TemporaryDirectory() as scratch:
        for workload, (batch, length) in {"1 query (32 tokens)": (1, 32),
                                          "8 documents (300 tokens)": (8, 300)}.items():
            sess = session(graph_path, threads, profile=os.path.join(scratch, "p"))
            names = [i.name for i in sess.get_inputs()]
            rng = np.random.default_rng(0)
            ids = rng.integers(1000, 29000, size=(batch, length), dtype=np.int64)
            ids[:, 0] = 101
            feed = {names[0]: ids, names[1]: np.ones((batch, length), np.int64)}
            for _ in range(repeats):
                sess.run(None, feed)
            events = json.loads(Path(sess.end_profiling()).read_text())
            by_op: dict[str, float] = {}
            runs = 0
            for e in events:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    op = e.get("args", {}).get("op_name", "?")
                    by_op[op] = by_op.get(op, 0.0) + e["dur"]
                elif e.get("cat") == "Session" and e["name"] == "model_run":
                    runs += 1
            total = sum(by_op.values())
            gemm = sum(v for op, v in by_op.items() if op in GEMM_OPS)
            result[workload] = {
                "threads": threads, "runs": runs,
                "node_ms_per_run": total / 1000 / max(runs, 1),
                "weight_product_share": gemm / total,
                "attention_share": by_op.get("Attention", 0.0) / total,
                "by_op_share": {op: v / total for op, v in sorted(
                    by_op.items(), key=lambda kv: -kv[1])},
            }
            print(workload, json.dumps(result[workload]), flush=True)
    return result


def needed_speedup(share: float, target: float) -> float | None:
    """Product speed-up that an end-to-end ``target`` would need when only ``share`` of the
    time speeds up (None: not reachable however fast the products get)."""
    rest = 1 / target - (1 - share)
    return share / rest if rest > 0 else None


# #16's targets over PyTorch, and the float32 export's speed over PyTorch from the Encoder
# backends table of docs/benchmarks.md (single query 19.2 -> 9.7 ms; documents 1.08x): not
# re-measured here, pass --onnx-over-torch to use other figures.
TARGETS = {"1 query (32 tokens)": 3.0, "8 documents (300 tokens)": 1.7}
ONNX_OVER_TORCH = {"1 query (32 tokens)": 1.98, "8 documents (300 tokens)": 1.08}


def headroom(report: dict) -> list[dict]:
    """For each encoder workload: the speed-up over the float32 export that #16's target asks
    for, the best any product speed-up could give, and the product speed-up it would take."""
    rows = []
    for workload, e in (report.get("encoder") or {}).items():
        over = report.get("onnx_over_torch", ONNX_OVER_TORCH)[workload]
        needed = TARGETS[workload] / over
        layer = next((r for r in report["layers"] if r["workload"] == workload
                      and r["threads"] == e["threads"]), None)
        for scope, share in (("weight products", e["weight_product_share"]),
                             ("weight products + fused attention",
                              e["weight_product_share"] + e["attention_share"])):
            rows.append({
                "workload": workload, "threads": e["threads"], "scope": scope, "share": share,
                "target_over_torch": TARGETS[workload], "onnx_over_torch": over,
                "needed_over_onnx": needed, "ceiling_over_onnx": 1 / (1 - share),
                "needed_product_speedup": needed_speedup(share, needed),
                "measured_layer_speedup": layer["int8_speedup"] if layer else None,
                "expected_over_onnx": (1 / ((1 - share) + share / layer["int8_speedup"])
                                       if layer else None),
            })
    return rows


def markdown(report: dict) -> str:
    flags = ", ".join(f for f, on in report["cpu_flags"].items() if on) or "none of those listed"
    lines = [f"CPU: {report['cpu']}; flags: {flags}; onnxruntime {report['onnxruntime']}.", "",
             "| workload | product (k→n) | threads | float32 µs | int8 µs | int8 speed-up |",
             "|---|---|---|---|---|---|"]
    for r in report["products"]:
        lines.append(f"| {r['workload']} | {r['product']} ({r['k']}→{r['n']}) | {r['threads']} "
                     f"| {r['float32_us']:.1f} | {r['int8_us']:.1f} | {r['int8_speedup']:.2f}x |")
    lines += ["", "| workload | threads | one layer's products, float32 µs | int8 µs | "
              "int8 speed-up |", "|---|---|---|---|---|"]
    for r in report["layers"]:
        lines.append(f"| {r['workload']} | {r['threads']} | {r['float32_us']:.0f} | "
                     f"{r['int8_us']:.0f} | {r['int8_speedup']:.2f}x |")
    if report.get("encoder"):
        lines += ["", "| encoder run (float32 export) | node ms per run | weight products | "
                  "fused attention | other |", "|---|---|---|---|---|"]
        for w, e in report["encoder"].items():
            other = 1 - e["weight_product_share"] - e["attention_share"]
            lines.append(f"| {w}, {e['threads']} threads | {e['node_ms_per_run']:.2f} | "
                         f"{e['weight_product_share']:.0%} | {e['attention_share']:.0%} | "
                         f"{other:.0%} |")
        lines += ["", "| workload | int8 on | target over float32 export | ceiling | product "
                  "speed-up needed | measured (one layer) | encoder speed-up it gives |",
                  "|---|---|---|---|---|---|---|"]
        for h in headroom(report):
            need = h["needed_product_speedup"]
            lines.append(
                f"| {h['workload']} | {h['scope']} ({h['share']:.0%}) | "
                f"{h['needed_over_onnx']:.2f}x ({h['target_over_torch']}x / "
                f"{h['onnx_over_torch']}x) | {h['ceiling_over_onnx']:.2f}x | "
                f"{'unreachable' if need is None else f'{need:.2f}x'} | "
                f"{h['measured_layer_speedup']:.2f}x | {h['expected_over_onnx']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=15, help="samples per contender")
    parser.add_argument("--sample-seconds", type=float, default=0.05)
    parser.add_argument("--profile-runs", type=int, default=20)
    parser.add_argument("--no-encoder", action="store_true", help="skip the encoder profile")
    parser.add_argument("--onnx-over-torch", type=float, nargs=2, metavar=("QUERY", "DOCUMENTS"),
                        default=list(ONNX_OVER_TORCH.values()),
                        help="the float32 export's speed over PyTorch (default: the figures "
                        "of docs/benchmarks.md)")
    parser.add_argument("--report", type=Path, default=None,
                        help="print the tables of a saved JSON report and stop")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.report is not None:
        print(markdown(json.loads(args.report.read_text())))
        return
    import onnxruntime

    report = {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "cpus": os.cpu_count(),
              "onnxruntime": onnxruntime.__version__,
              "load_average_at_start": os.getloadavg()[0],
              "onnx_over_torch": dict(zip(ONNX_OVER_TORCH, args.onnx_over_torch, strict=True))}
    print(json.dumps(report), flush=True)
    report["products"] = compare_products(args.threads, args.rounds, args.sample_seconds)
    report["layers"] = per_layer(report["products"])
    if not args.no_encoder:
        report["encoder"] = encoder_profile(max(args.threads), args.profile_runs)
    report["load_average_at_end"] = os.getloadavg()[0]
    print(markdown(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
