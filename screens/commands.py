"""Command palette entries: every screen and action (mutating ones absent in read-only sessions)."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class IsoadminCommands(Provider):
    """Screens (Uploads, Jobs, Volumes, Health, Audit, Owners, Hosts), Refresh, View as user, Approve / Reject selected upload, Help."""

    def _commands(self) -> list[tuple[str, str, object]]:
        app = self.app
        items = [
            ("Uploads", "owners' uploads", partial(app.switch_mode, "uploads")),
            ("Jobs", "import jobs and their progress", partial(app.switch_mode, "jobs")),
            ("Volumes", "dom0 volumes and capacity", partial(app.switch_mode, "volumes")),
            ("Health", "leftovers: orphan volumes, stray disks, unfinished jobs", partial(app.switch_mode, "health")),
            ("Audit", "the audit log", partial(app.switch_mode, "audit")),
            ("Owners", "owners, quota use, uploads, CDs, VM disks", partial(app.switch_mode, "owners")),
            ("Hosts", "hosts, up/down, latency, capacity", partial(app.switch_mode, "hosts")),
            ("Refresh now", "refresh the inventory from every host", app.action_refresh_now),
            ("View as user", "show only the owners a user may act for (empty: all)", app.action_view_as),
            ("Help", "keys", app.action_help),
        ]
        if not app.read_only:
            items += [
                ("Approve selected upload", "import it onto a dom0 volume", partial(self._on_uploads, "approve")),
                ("Reject selected upload", "reject it with a reason", partial(self._on_uploads, "reject")),
            ]
        return items

    def _on_uploads(self, action: str) -> None:
        from .uploads import UploadsScreen

        screen = self.app.screen
        if isinstance(screen, UploadsScreen):
            getattr(screen, f"action_{action}")()
        else:
            self.app.notify("select an upload on the Uploads screen first", severity="warning")

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
