"""The Kernels flow (``K`` on the Volumes and Uploads screens): read the kernel entries of an imported ISO or of
an uploaded kernel and its ramdisk, pick one, stage it on a dom0."""

from __future__ import annotations

import humanize
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from backend import kernels
from backend.errors import IsoadminError
from backend.kernels import KernelEntry

from .plain import plain, printable


def entry_text(e: KernelEntry) -> Text:
    """One entry as plain text: labels, paths and command lines come from the ISO, so they are never markup
    and go through the display rule (:func:`backend.text.printable`)."""
    text = Text(f"{e.number}. {printable(e.label)}\n", style="bold")
    text.append(f"   {printable(e.kernel)} ({humanize.naturalsize(e.kernel_size, binary=True)})")
    if e.ramdisk:
        text.append(f" + {printable(e.ramdisk)} ({humanize.naturalsize(e.ramdisk_size, binary=True)})")
    text.append(f"\n   {printable(e.cmdline) or '(no command line)'}  ·  from {printable(e.source)}", style="dim")
    return text


class PickKernel(ModalScreen[int | None]):
    """The kernel entries of an ISO; dismisses with the chosen entry's number, or None (``escape``).

    Args:
        title: the dialog's title (shown under the display rule). entries: from :func:`backend.kernels.kernels`.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, entries: list[KernelEntry]) -> None:
        super().__init__()
        self.title_text = title
        self.entries = entries

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(plain(self.title_text), classes="dialog-title")
            yield OptionList(*(Option(entry_text(e), id=str(e.number)) for e in self.entries), id="kernels")
            yield Static("enter stages that kernel and ramdisk on the dom0 · escape cancels", classes="hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(int(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)


class KernelFlow:
    """Mixin for a screen with the Kernels flow: :meth:`start_kernels` reads the entries in a worker, shows
    :class:`PickKernel`, and stages the one picked in another worker (the default dom0: the ISO's, or for an
    uploaded kernel the image host's first). Errors go to the app's error modal: an expected one from the worker
    itself, any other through the worker's state change (``exit_on_error=False``; the screen forwards it with
    :class:`~screens.workers.ForwardWorkerErrors`), so a hostile ISO never ends the console."""

    def start_kernels(self, ref: str) -> None:
        """Start the flow for ``ref`` (``DOM0:VOLUME`` of an imported ISO, or ``OWNER/FILE`` of a kernel upload)."""
        self.app.notify(f"reading the boot entries of {ref}…", title="Kernels", markup=False)
        self.pick_kernel(ref)

    @work(group="kernels", exclusive=True, exit_on_error=False)
    async def pick_kernel(self, ref: str) -> None:
        """Read ``ref``'s entries (a worker: the ISO is read over SSH) and show them to pick one; the entries
        the listing skipped are named in one warning."""
        try:
            source, entries = await kernels.kernels(self.app.site, ref)
        except IsoadminError as exc:
            self.app.show_error(exc)
            return
        title = kernels.source_title(source)
        if entries.skipped:
            more = f" (and {len(entries.skipped) - 3} more)" if len(entries.skipped) > 3 else ""
            self.app.notify(f"{title}: {len(entries.skipped)} skipped: "
                            + "; ".join(str(s) for s in entries.skipped[:3]) + more,
                            title="Kernels", severity="warning", markup=False)
        if not entries:
            self.app.notify(f"{title}: no bootable kernel found", title="Kernels", markup=False)
            return

        def picked(number: int | None) -> None:
            if number is not None:
                self.stage_kernel(ref, str(number))

        self.app.push_screen(PickKernel(f"Kernels of {title}", entries), picked)

    @work(group="kernels", exclusive=True, exit_on_error=False)
    async def stage_kernel(self, ref: str, entry: str) -> None:
        """Stage entry ``entry`` of ``ref`` (a worker) and say where it landed."""
        try:
            staged = await kernels.stage(self.app.site, ref, entry)
        except IsoadminError as exc:
            self.app.show_error(exc)
            return
        self.app.notify(f"staged at {staged.dom0}:{staged.path}", title="Kernel set staged", markup=False)
