"""The hub: the pipeline's steps, the journal, the worker and its supervisor, audits."""
