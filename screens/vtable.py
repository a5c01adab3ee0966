"""A virtualised table for the big screens (Uploads, Volumes): rows live in a plain list and only the lines
on screen are rendered, so setting 10,000 rows, filtering them or moving the cursor costs the same as for
a hundred.

Textual's ``DataTable`` keeps per-row bookkeeping: adding 10,000 rows takes about half a second here and
removing one row costs time proportional to the table (a filter that hides 9,000 rows took minutes). This
widget keeps the part of its API the screens use (``row_count``, ``cursor_row``, ``get_row_at``,
``get_cell``, ``move_cursor``, a ``RowSelected`` message on ``enter``) on top of Textual's line API
(``ScrollView.render_line``). Its look comes from ``styles/app.tcss`` (component classes
``vtable--header``, ``vtable--cursor``, ``vtable--odd``).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .keys import bindings

Cell = str | Text
#: widest a column gets (a longer value ends in "…"; details show it whole)
MAX_COLUMN = 48
Row = tuple[str, Sequence[Cell]]  # (key, cells)


def _width(cell: Cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else len(cell)


class VirtualTable(ScrollView, can_focus=True):
    """A read-only table of keyed rows with a row cursor.

    Args:
        columns: (key, label) pairs, in display order.
        id: the widget id.
    """

    COMPONENT_CLASSES = {"vtable--header", "vtable--cursor", "vtable--odd"}
    BINDINGS = [*bindings("tables"), Binding("enter", "select", "Select", show=False)]

    class RowSelected(Message):
        """``enter`` (or a click) on a row. Attributes: table, key (the row's key), row (its index)."""

        def __init__(self, table: "VirtualTable", key: str, row: int) -> None:
            super().__init__()
            self.table, self.key, self.row = table, key, row

        @property
        def control(self) -> "VirtualTable":
            return self.table

    class HeaderSelected(Message):
        """A click on a column header. Attributes: table, column (its index)."""

        def __init__(self, table: "VirtualTable", column: int) -> None:
            super().__init__()
            self.table, self.column = table, column

        @property
        def control(self) -> "VirtualTable":
            return self.table

    def __init__(self, columns: Sequence[tuple[str, str]], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = list(columns)
        self._index = {key: i for i, (key, _) in enumerate(self.columns)}
        self.rows: list[Row] = []
        self._positions: dict[str, int] = {}
        self.widths = [len(label) for _, label in self.columns]
        self.cursor_row = 0
        self.sort_column: int | None = None  # shown in the header (the screen sorts the rows)
        self.sort_reverse = False
        self.empty_text = "nothing to show"  # said in place of the rows when there are none

    # ------------------------------------------------------------------ data

    @property
    def row_count(self) -> int:
        """Number of rows."""
        return len(self.rows)

    @property
    def cursor_key(self) -> str | None:
        """Key of the row under the cursor, or None when empty."""
        return self.rows[self.cursor_row][0] if self.rows else None

    def get_row_at(self, index: int) -> list[Cell]:
        """The cells of row ``index`` (0-based). Raises IndexError."""
        return list(self.rows[index][1])

    def get_cell(self, key: str, column: str) -> Cell:
        """The cell of row ``key`` in column ``column``. Raises KeyError."""
        return self.rows[self._positions[key]][1][self._index[column]]

    def column_widths(self, rows: list[Row]) -> list[int]:
        """The width of each column that fits its label and every cell of ``rows``."""
        widths = [len(label) + 2 for _, label in self.columns]  # room for the sort arrow
        for _, cells in rows:
            for i, cell in enumerate(cells):
                w = _width(cell)
                if w > widths[i]:
                    widths[i] = w
        return [min(w, MAX_COLUMN) for w in widths]

    def set_rows(self, rows: list[Row], widths: list[int] | None = None) -> None:
        """Show ``rows`` (already filtered and sorted). The cursor stays on the same key when it is still
        there, else at the same position. Only a change of the rows on screen repaints.

        Args:
            rows: (key, cells) pairs. widths: column widths (default: :meth:`column_widths` of ``rows``);
                a screen that filters passes the widths of all its rows, so columns stay put.
        """
        old_key, old_rows = self.cursor_key, self.rows
        self.rows = rows
        self._positions = {key: i for i, (key, _) in enumerate(rows)}
        widths = widths or self.column_widths(rows)
        if widths != self.widths:
            self.refresh()
        self.widths = widths
        self.virtual_size = Size(sum(widths) + 2 * len(widths), len(rows) + 1)
        position = self._positions.get(old_key) if old_key is not None else None
        self.cursor_row = min(position if position is not None else self.cursor_row, max(0, len(rows) - 1))
        top = int(self.scroll_offset.y)
        window = slice(top, top + self.size.height)
        if old_rows[window] != rows[window] or len(old_rows) != len(rows):
            self.refresh()
        self._keep_cursor_visible()

    def update_row(self, key: str, cells: Sequence[Cell]) -> None:
        """Replace the cells of row ``key`` (if shown) and repaint that line only."""
        index = self._positions.get(key)
        if index is not None:
            self.rows[index] = (key, cells)
            self._refresh_row(index)

    def move_cursor(self, row: int) -> None:
        """Put the cursor on row ``row`` (clamped) and scroll it into view."""
        previous = self.cursor_row
        self.cursor_row = max(0, min(row, len(self.rows) - 1))
        if previous != self.cursor_row:
            self._refresh_row(previous)
            self._refresh_row(self.cursor_row)
        self._keep_cursor_visible()

    # ------------------------------------------------------------------ keys

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_jump(self, row: int) -> None:
        self.move_cursor(row if row >= 0 else len(self.rows) - 1)

    def action_select(self) -> None:
        if self.rows:
            self.post_message(self.RowSelected(self, self.rows[self.cursor_row][0], self.cursor_row))

    def on_click(self, event: Click) -> None:
        if event.y == 0:
            x = int(self.scroll_offset.x) + event.x - 1
            for i, width in enumerate(self.widths):
                if x < width + 2:
                    self.post_message(self.HeaderSelected(self, i))
                    return
                x -= width + 2
            return
        row = int(self.scroll_offset.y) + event.y - 1
        if event.y >= 1 and 0 <= row < len(self.rows):
            self.move_cursor(row)
            if event.chain > 1:
                self.action_select()

    # ------------------------------------------------------------------ rendering

    def _keep_cursor_visible(self) -> None:
        body = max(1, self.size.height - 1)
        top = int(self.scroll_offset.y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + body:
            self.scroll_to(y=self.cursor_row - body + 1, animate=False)

    def _refresh_row(self, row: int) -> None:
        y = row - int(self.scroll_offset.y) + 1
        if 1 <= y < self.size.height:
            self.refresh_line(y)

    def _line(self, cells: Sequence[Cell], style: Style) -> list[Segment]:
        segments: list[Segment] = [Segment(" ", style)]
        for cell, width in zip(cells, self.widths):
            if isinstance(cell, Text):
                text = cell.copy()
                text.truncate(width, pad=True)
                segments.extend(text.render(self.app.console, end=""))
            else:
                text = cell if len(cell) <= width else cell[:width - 1] + "…"
                segments.append(Segment(text.ljust(width), style))
            segments.append(Segment("  ", style))
        return list(Segment.apply_style(segments, style))

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the widget: the header on the first line, then the rows from the scroll offset."""
        width = self.size.width
        scroll_x, top = int(self.scroll_offset.x), int(self.scroll_offset.y)
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("vtable--header")
            labels = [label + ((" ▼" if self.sort_reverse else " ▲") if i == self.sort_column else "")
                      for i, (_, label) in enumerate(self.columns)]
            segments = self._line(labels, style)
            total = sum(self.widths) + 2 * len(self.widths) + 1
            if total > scroll_x + width:  # more to the right: say so at the header's right edge
                return Strip.join([Strip(segments, total).crop_extend(scroll_x, scroll_x + width - 1, style),
                                   Strip([Segment("→", style)], 1)])
        else:
            row = top + y - 1
            if not self.rows and y == 1:
                return Strip([Segment(f" {self.empty_text}", base + Style(italic=True, dim=True))]).crop_extend(0, width, base)
            if row >= len(self.rows):
                return Strip.blank(width, base)
            style = base
            if row % 2:
                style += self.get_component_rich_style("vtable--odd")
            if row == self.cursor_row:
                style += self.get_component_rich_style("vtable--cursor")
            segments = self._line(self.rows[row][1], style)
        total = sum(self.widths) + 2 * len(self.widths) + 1
        return Strip(segments, total).crop_extend(scroll_x, scroll_x + width, style)

    def on_focus(self) -> None:
        self._refresh_row(self.cursor_row)

    def on_blur(self) -> None:
        self._refresh_row(self.cursor_row)
