"""Measure colbridge's encoder (fp16 on GPU vs fp32 on CPU) and exact MaxSim on GPU vs CPU.

The encoder is a MiniLM-L6-shaped ColBERT (6 layers, 384 wide, 96-d projection) with random
weights and the real MiniLM tokenizer: speed depends on the shape, not on the weights, and the
GPU machine cannot download the trained ones. Called by gpu_check.sh.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from colbridge import ColBERTModel
from colbridge.scoring import maxsim_packed

ROOT = Path(__file__).resolve().parents[2]


def build_model(device: str) -> ColBERTModel:
    from pylate import models
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                         intermediate_size=1536, vocab_size=30522)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(ROOT / ".gpu" / "tokenizer")).save_pretrained(folder)
    colbert = models.ColBERT(model_name_or_path=str(folder), embedding_size=96, device="cpu",
                             query_prefix="[unused0]", document_prefix="[unused1]",
                             query_length=32, document_length=300)
    return ColBERTModel(colbert, name="minilm-shaped", device=device, batch_size=64)


def documents(n: int) -> list[str]:
    corpus = [json.loads(line)["text"] for line in
              (ROOT / "core/src/colbridge/data/sample_corpus.jsonl").read_text().splitlines()]
    # about 300 tokens each, like SciFact abstracts at document length 300
    return [" ".join(corpus[(i + j) % len(corpus)] for j in range(4)) for i in range(n)]


def encode_rate(model: ColBERTModel, texts: list[str]) -> float:
    model.encode_documents(texts[:64], show_progress=False)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    model.encode_documents(texts, show_progress=False)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(texts) / (time.perf_counter() - started)


def maxsim_gpu(query: torch.Tensor, packed: torch.Tensor, lengths: torch.Tensor,
               segment: torch.Tensor) -> torch.Tensor:
    similarities = query @ packed.T  # (q, tokens)
    best = torch.full((query.shape[0], len(lengths)), -2.0, device=query.device, dtype=query.dtype)
    best.scatter_reduce_(1, segment.expand(query.shape[0], -1), similarities, reduce="amax")
    return best.float().sum(0)


def main(out: Path) -> None:
    result: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        result["gpu"] = torch.cuda.get_device_name(0)
    texts = documents(2048)
    gpu_model = build_model("cuda" if torch.cuda.is_available() else "cpu")
    result["encode_gpu_fp16_docs_per_s"] = encode_rate(gpu_model, texts)
    cpu_model = build_model("cpu")
    result["encode_cpu_fp32_docs_per_s"] = encode_rate(cpu_model, texts[:128])

    rng = np.random.default_rng(0)
    lengths = rng.integers(150, 300, size=1000)
    packed = rng.standard_normal((int(lengths.sum()), 96)).astype(np.float32)
    packed /= np.linalg.norm(packed, axis=1, keepdims=True)
    queries = rng.standard_normal((50, 32, 96)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=2, keepdims=True)
    cpu_times = []
    for q in queries:
        started = time.perf_counter()
        reference = maxsim_packed(q, packed, lengths)
        cpu_times.append(time.perf_counter() - started)
    result["maxsim_1000_candidates_cpu_ms_p50"] = statistics.median(cpu_times) * 1000
    if torch.cuda.is_available():
        device_packed = torch.from_numpy(packed).cuda().half()
        segment = torch.repeat_interleave(torch.arange(1000, device="cuda"),
                                          torch.from_numpy(lengths).cuda())[None, :]
        device_lengths = torch.from_numpy(lengths).cuda()
        gpu_times, errors = [], []
        for q in queries:
            query = torch.from_numpy(q).cuda().half()
            torch.cuda.synchronize()
            started = time.perf_counter()
            scores = maxsim_gpu(query, device_packed, device_lengths, segment)
            torch.cuda.synchronize()
            gpu_times.append(time.perf_counter() - started)
            errors.append(float(np.abs(scores.cpu().numpy() - maxsim_packed(q, packed, lengths)).max()))
        result["maxsim_1000_candidates_gpu_fp16_ms_p50"] = statistics.median(gpu_times[5:]) * 1000
        result["maxsim_gpu_max_abs_error_vs_cpu"] = max(errors)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    del reference


if __name__ == "__main__":
    main(Path(sys.argv[1]))
