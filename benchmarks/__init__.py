"""The repository's heavier benchmark scripts (``topology``: 1 node vs a six-node cluster).

The comparison a user runs against their own server ships in the package, as
:mod:`agentmem.bench` (``agentmem bench``); ``python -m benchmarks`` runs the same.
"""
