"""Allow ``python -m dermaguard``."""

from dermaguard.ui.cli import main

raise SystemExit(main())
