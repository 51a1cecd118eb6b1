"""agentmem's benchmarks: ``python -m benchmarks`` or ``agentmem bench`` (entry: :func:`benchmarks.run.main`).

Modules, one concept each: ``workload`` (the data moved), ``contenders`` (agentmem and the
hand-written alternatives), ``harness`` (timing, repetitions, medians), ``probes`` (round
trips and server memory), ``encoding`` (json vs orjson), ``machine`` (what ran it),
``report`` (ratios and the table), ``chart`` (the optional PNG), ``run`` (the command).
"""
