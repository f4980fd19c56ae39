"""Exact field-BM25 sample retrieval (RIM's search step), cached per dataset and settings."""
