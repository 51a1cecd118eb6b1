"""``python -m benchmarks``: the same as ``agentmem bench`` (see :mod:`agentmem.bench.run`)."""

from agentmem.bench.run import main

raise SystemExit(main())
