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


class SortMixin:
    """Sorting for a screen with one :class:`~screens.vtable.VirtualTable` (the screen's ``AUTO_FOCUS``):
    ``s`` sorts by the next column, ``S`` reverses, a click on a header sorts by that column (again:
    reverses). The screen gives one key function per column in ``SORT_KEYS`` (of the row's object) and
    orders its rows with :meth:`ordered`."""

    SORT_KEYS: tuple = ()
    sort_column: int | None = None
    sort_reverse = False

    def _sorted(self) -> None:
        table = self.query_one(self.AUTO_FOCUS)
        table.sort_column, table.sort_reverse = self.sort_column, self.sort_reverse
        table.refresh()
        self.update_view(force=True)

    def action_sort(self) -> None:
        self.sort_column = 0 if self.sort_column is None else (self.sort_column + 1) % len(self.SORT_KEYS)
        self._sorted()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._sorted()

    def on_virtual_table_header_selected(self, event) -> None:
        event.stop()
        if event.column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = event.column, False
        self._sorted()

    def ordered(self, rows: list, objects: dict) -> list:
        """``rows`` ((key, …) tuples, in their default order) in the chosen order; ``objects`` maps each
        row key to what ``SORT_KEYS`` take. Ties keep the default order."""
        if self.sort_column is None:
            return list(reversed(rows)) if self.sort_reverse else rows
        key = self.SORT_KEYS[self.sort_column]
        return sorted(rows, key=lambda row: key(objects[row[0]]), reverse=self.sort_reverse)
