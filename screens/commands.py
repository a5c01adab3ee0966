"""Command palette entries (``ctrl+p`` or ``:``): every action of :data:`screens.keys.KEYS` — each screen,
refresh, view as, help, messages, and every screen's actions (approve, reject, gc, sort, filter, cancel,
verify, delete, check, repair …). An action of another screen switches to that screen first; a mutating
one in a read-only session says "read-only session", as its key does."""

from __future__ import annotations

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .keys import KEYS, Key, display


class IsoadminCommands(Provider):
    """Every palette-worthy key of :data:`~screens.keys.KEYS`, with its key and its help line."""

    def _commands(self) -> list[tuple[str, str, Key]]:
        items = []
        for k in KEYS:
            if not k.palette or k.where == "tables":
                continue
            where = "" if k.where == "anywhere" else f"{k.where.title()}: "
            items.append((f"{where}{k.label}", f"{k.help} (key: {display(k.keys)})", k))
        return items

    async def _run(self, key: Key) -> None:
        app = self.app
        if key.where == "anywhere":
            await app.run_action(key.action)
            return
        if app.current_mode != key.where:
            await app.switch_mode(key.where)
        await app.run_action(key.action, app.screen)

    def _callback(self, key: Key):
        async def run() -> None:
            await self._run(key)
        return run

    async def discover(self) -> Hits:
        for name, help_text, key in self._commands():
            yield DiscoveryHit(name, self._callback(key), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, key in self._commands():
            score = matcher.match(f"{name} {key.id}")
            if score > 0:
                yield Hit(score, matcher.highlight(name), self._callback(key), help=help_text)
