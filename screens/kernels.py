"""Picking a kernel entry of an imported ISO to stage on its dom0 (the Volumes screen's ``k``)."""

from __future__ import annotations

import humanize
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from backend.kernels import KernelEntry


def entry_text(e: KernelEntry) -> Text:
    """One entry as plain text (labels and command lines come from the ISO: never markup)."""
    text = Text(f"{e.number}. {e.label}\n", style="bold")
    text.append(f"   {e.kernel} ({humanize.naturalsize(e.kernel_size, binary=True)})")
    if e.ramdisk:
        text.append(f" + {e.ramdisk} ({humanize.naturalsize(e.ramdisk_size, binary=True)})")
    text.append(f"\n   {e.cmdline or '(no command line)'}  ·  from {e.source}", style="dim")
    return text


class PickKernel(ModalScreen[int | None]):
    """The kernel entries of an ISO; dismisses with the chosen entry's number, or None (``escape``).

    Args:
        title: the dialog's title (plain text). entries: from :func:`backend.kernels.kernels`.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, entries: list[KernelEntry]) -> None:
        super().__init__()
        self.title_text = title
        self.entries = entries

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text), classes="dialog-title")
            yield OptionList(*(Option(entry_text(e), id=str(e.number)) for e in self.entries), id="kernels")
            yield Static("enter stages that kernel and ramdisk on the dom0 · escape cancels", classes="hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(int(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
