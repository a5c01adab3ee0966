"""The footer every screen and modal shows: Textual's ``Footer``, rebuilt only when its keys change.

Textual's footer rebuilds its key widgets (one ``FooterKey`` each, with their styles) whenever its screen
says its bindings may have changed, which it does on every screen switch and focus change. Profiled on
the Uploads screen with 10,000 rows (``python -m bench --only P3 --profile DIR``), that rebuild and the
restyling it causes were the largest part of a screen switch. The keys a screen shows rarely change, so
this footer compares them with what it shows and keeps its widgets when they are the same.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    """A ``Footer`` that recomposes only when the shown keys (key, label, action, enabled, tooltip) differ
    from the ones it shows."""

    _shown: tuple | None = None

    @staticmethod
    def shown_keys(screen: Screen) -> tuple:
        """What the footer of ``screen`` shows now: one (key, label, action, enabled, tooltip) per key."""
        return tuple((binding.key, binding.description, binding.action, enabled, tooltip)
                     for _node, binding, enabled, tooltip in screen.active_bindings.values() if binding.show)

    def bindings_changed(self, screen: Screen) -> None:
        """Textual's hook: rebuild the keys, unless they are the ones already shown."""
        if self.is_attached and screen is self.screen and screen.app.app_focus:
            shown = self.shown_keys(screen)
            if shown == self._shown:
                self._bindings_ready = True
                return
            self._shown = shown
        super().bindings_changed(screen)
