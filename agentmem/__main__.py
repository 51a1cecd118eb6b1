"""``python -m agentmem`` is the ``agentmem`` command."""

import sys

from agentmem.cli import main

sys.exit(main())
