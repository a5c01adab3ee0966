"""Worker errors reach one handler: the app's ``on_worker_state_changed``.

Textual posts a worker's ``Worker.StateChanged`` to the node that started it, without bubbling; a screen
whose workers may fail mixes this in to hand the message to the app, which shows the error in one modal.
"""

from __future__ import annotations

from textual.worker import Worker


class ForwardWorkerErrors:
    """Mixin for a screen that starts workers (all with ``exit_on_error=False``)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Hand the state change to the app's one handler of worker errors."""
        self.app.on_worker_state_changed(event)
