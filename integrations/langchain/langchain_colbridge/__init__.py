"""LangChain integration for colbridge."""
