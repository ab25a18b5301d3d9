"""roomscope's collector: OTLP ingest, tagging, session tracking and the store."""
