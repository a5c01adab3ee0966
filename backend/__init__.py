"""isoadmin backend: a plain asyncio library (no Textual) for the image host, dom0s and import jobs.

The TUI (``tui``/``screens``) and the CLI drive it; a script or a cron job could too.
"""

__version__ = "0.1.0"
