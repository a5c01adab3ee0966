"""``python -m tui`` is ``isoadmin``."""

from .cli import main

raise SystemExit(main())
