"""agentmem's benchmarks, shipped in the wheel: ``agentmem bench`` (entry: :func:`agentmem.bench.run.main`;
``python -m benchmarks`` in a checkout runs the same). The repository's ``benchmarks/`` keeps
the heavier scripts (``benchmarks/topology.py``: a six-node cluster).

Modules, one concept each: ``workload`` (the data moved), ``contenders`` (agentmem and the
hand-written alternatives), ``harness`` (timing, repetitions, medians), ``probes`` (round
trips and server memory), ``encoding`` (json vs orjson), ``machine`` (what ran it),
``report`` (ratios and the table), ``chart`` (the optional PNG), ``run`` (the command).
"""
