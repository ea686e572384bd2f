"""ColBERT retriever for LlamaIndex, backed by colbridge."""
