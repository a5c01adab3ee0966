"""Picking an owner's VM for a CD volume (the Volumes screen's ``i``)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from .plain import plain


class PickDomain(ModalScreen[str | None]):
    """A list of domain names; dismisses with the one chosen (``enter``), or None (``escape``).

    Args:
        title: the dialog's title. domains: the names offered. Both are shown under the display rule
        (:func:`screens.plain.plain`).
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, domains: list[str]) -> None:
        super().__init__()
        self.title_text = title
        self.domains = domains

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(plain(self.title_text), classes="dialog-title")
            yield OptionList(*(Option(plain(d), id=str(i)) for i, d in enumerate(self.domains)), id="domains")
            yield Static("enter inserts the CD into that VM's CD-ROM drive · escape cancels", classes="hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.domains[int(event.option.id)])

    def action_cancel(self) -> None:
        self.dismiss(None)
