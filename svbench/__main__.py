"""``python -m svbench`` behaves exactly like the ``svbench`` command."""

from svbench.cli.main import main

raise SystemExit(main())
