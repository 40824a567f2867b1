"""`t` on an endpoint: a short chat completion streamed through its OpenAI route, shown as it
arrives, then timed (first token, tokens/s) — or the error and its fix, in place."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from podtui.services.front import ENDPOINT_TEST_PROMPT, EndpointRow
from podtui.tui.host import Hosted
from podtui.tui.messages import ChatTokens


class EndpointTestDialog(Hosted, ModalScreen[None]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, row: EndpointRow) -> None:
        super().__init__()
        self.row = row
        self.answer = ""
        self.outcome: str | None = None   # the timing line, or the error's title
        self.failed = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide"):
            yield Static(f"Test chat: endpoint {self.row.label}", classes="dialog-title", markup=False)
            yield Static(f"You: {ENDPOINT_TEST_PROMPT}", id="test-prompt", markup=False)
            yield Static("", id="test-answer", markup=False)
            state = "" if self.row.state == "warm" else (
                f" It is {self.row.state}: the answer waits for a worker to start (billed from then on).")
            yield Static("Streaming through /openai/v1/chat/completions…" + state, id="test-result", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Close", id="close", variant="primary")

    def on_mount(self) -> None:
        self.app_host.run_service(self.app_host.services.test_endpoint, self.row.key, self.token,
                                  name=f"test {self.row.label}", group="endpoint-test",
                                  on_done=self.done, on_error=self.failed_with)

    def token(self, text: str) -> None:
        """Called from the worker thread by the service; crosses to the UI as a message."""
        self.post_message(ChatTokens(text))

    def on_chat_tokens(self, message: ChatTokens) -> None:
        self.answer += message.text
        self.query_one("#test-answer", Static).update(f"{self.row.label}: {self.answer}")

    def done(self, text: str) -> None:
        self.outcome = str(text)
        result = self.query_one("#test-result", Static)
        result.update(self.outcome)
        result.set_classes("ok")

    def failed_with(self, title: str, fix: str) -> None:
        self.outcome, self.failed = title, True
        result = self.query_one("#test-result", Static)
        result.update(f"✘ {title}" + (f"\nFix: {fix}" if fix else ""))
        result.set_classes("bad")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
