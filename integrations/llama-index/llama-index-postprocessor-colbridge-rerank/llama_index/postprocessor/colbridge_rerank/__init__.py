"""ColBERT reranking node postprocessor for LlamaIndex, backed by colbridge."""
