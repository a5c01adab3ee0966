"""A filter box for table screens: ``/`` shows it, typing filters, ``enter`` returns to the table,
``escape`` clears and hides it."""

from __future__ import annotations

from textual.widgets import Input


class FilterMixin:
    """For a screen with one hidden ``Input`` (the filter box) and one table, the screen's ``AUTO_FOCUS``.

    The screen sets ``filter_text`` from the box and redraws with ``update_view()``.
    """

    filter_text = ""

    def action_filter(self) -> None:
        box = self.query_one(Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self.update_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(self.AUTO_FOCUS).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one(Input)
        if box.display:
            box.value = ""
            box.display = False
            self.query_one(self.AUTO_FOCUS).focus()
