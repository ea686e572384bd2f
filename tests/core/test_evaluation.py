"""`colbridge eval` on a tiny BEIR folder built from the sample corpus, and the metric formulas."""

from __future__ import annotations

import json
import math

import pytest
from colbridge.cli import app
from colbridge.evaluation import agreement_at, load_beir, mrr_at, ndcg_at, recall_at
from colbridge.models.colbert import BACKENDS
from typer.testing import CliRunner


def test_metric_formulas_on_a_hand_worked_case():
    relevance = {"a": 1, "b": 2}
    ranked = ["x", "b", "a"]
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at(ranked, relevance, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at(["b", "a"], relevance, 10) == pytest.approx(1.0)
    assert recall_at(ranked, relevance, 2) == 0.5
    assert mrr_at(ranked, relevance, 10) == 0.5
    assert mrr_at(["x"], relevance, 10) == 0.0
    assert agreement_at({"q": ["a", "b"]}, {"q": ["b", "c"]}, 2) == 0.5


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory, sample_corpus, demo_queries):
    root = tmp_path_factory.mktemp("beir") / "sample"
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as f:
        for doc in sample_corpus:
            f.write(json.dumps({"_id": doc["id"], "title": "", "text": doc["text"]}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for number, q in enumerate(demo_queries):
            f.write(json.dumps({"_id": f"q{number}", "text": q["query"]}) + "\n")
    with open(root / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for number, q in enumerate(demo_queries):
            f.write(f"q{number}\t{q['expected_id']}\t1\n")
    return root


def test_limits_keep_judged_documents(beir_folder, demo_queries):
    data = load_beir(beir_folder, limit_docs=10, limit_queries=3)
    assert len(data.queries) == 3 and len(data.doc_ids) == 10
    assert {q["expected_id"] for q in demo_queries[:3]} <= set(data.doc_ids)


def test_eval_smoke_json(beir_folder, offline_model, tmp_path):
    result = CliRunner().invoke(app, ["eval", str(beir_folder), "--model", "offline-minilm",
                                      "--json", "--plot", str(tmp_path / "sweep.png")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["documents"] == 122 and report["queries"] == 8
    assert report["backend"] in {"torch", *BACKENDS}  # which encoder ran
    assert report["quality"]["ndcg@10"] >= 0.8  # every demo query has one obvious answer
    assert report["quality"]["agreement@10"] == 1.0  # 122 documents: scored exhaustively
    assert report["build_s"]["encode_s"] > 0 and report["size"]["bytes_per_token_vector"] > 0
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    assert len(report["sweep"]) >= 4
    # All three search modes, side by side, by default.
    assert set(report["modes"]) == {"colbert", "bm25", "hybrid"}
    assert report["modes"]["colbert"]["ndcg@10"] == report["quality"]["ndcg@10"]
    for mode in report["modes"].values():
        assert 0 < mode["ndcg@10"] <= 1 and mode["search_p50_ms"] > 0
    assert report["size"]["lexical_bytes"] > 0


def test_eval_one_mode_table(beir_folder, offline_model, tmp_path):
    result = CliRunner().invoke(app, ["eval", str(beir_folder), "--model", "offline-minilm",
                                      "--mode", "bm25"])
    assert result.exit_code == 0, result.output
    assert "search modes" in result.output and "bm25" in result.output
    assert "hybrid" not in result.output


def test_eval_reuses_a_matching_index_and_rejects_another(beir_folder, offline_model, tmp_path):
    folder = tmp_path / "ix"
    runner = CliRunner()
    first = runner.invoke(app, ["eval", str(beir_folder), "--index", str(folder), "--model",
                                "offline-minilm", "--json"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["eval", str(beir_folder), "--index", str(folder), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output[again.output.index("{"):])["build_s"] == {}
    other = runner.invoke(app, ["eval", str(beir_folder), "--index", str(folder),
                                "--limit-docs", "20"])
    assert other.exit_code == 1 and "pass an empty or matching --index" in other.output


def test_not_a_beir_folder(tmp_path):
    result = CliRunner().invoke(app, ["eval", str(tmp_path)])
    assert result.exit_code == 1 and "not a BEIR folder" in result.output


def test_eval_takes_the_document_length_and_the_long_documents_setting(beir_folder,
                                                                       offline_model):
    runs = {}
    for setting in ("truncate", "split"):
        result = CliRunner().invoke(app, [
            "eval", str(beir_folder), "--model", "offline-minilm", "--mode", "colbert",
            "--limit-queries", "2", "--limit-docs", "20", "--document-length", "16",
            "--long-documents", setting, "--json"])
        assert result.exit_code == 0, result.output
        runs[setting] = json.loads(result.output[result.output.index("{"):])
        assert runs[setting]["document_length"] == 16
        assert runs[setting]["long_documents"] == setting
    # Split passages keep every token: more vectors than the truncated index holds.
    assert runs["split"]["size"]["token_vectors"] > runs["truncate"]["size"]["token_vectors"]
