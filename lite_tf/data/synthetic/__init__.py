"""Generated data: ``procedural`` (learnable built-in few-shot classes, no download) and ``fake``
(small random record sets with a given spec's structure, for tests and benchmarks)."""
