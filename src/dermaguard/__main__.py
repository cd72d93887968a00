"""Allow ``python -m dermaguard``."""

from dermaguard.cli import main

raise SystemExit(main())
