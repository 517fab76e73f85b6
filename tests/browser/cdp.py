"""Drive headless Chromium over the DevTools protocol, through a pipe (no extra packages).

`--remote-debugging-pipe` makes Chromium read commands from its fd 3 and write answers and
events to its fd 4, each a JSON text ending in NUL. A `Browser` opens one page, runs
expressions in it, clicks, and answers its alert/confirm/prompt dialogs from a plan the test
sets beforehand (a dialog without a planned answer fails the test)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.stack import eventually


@dataclass
class Dialog:
    """A dialog the page opened, and how the test answered it."""

    type: str  # alert, confirm, prompt
    message: str
    accepted: bool
    text: str | None = None


@dataclass
class Browser:
    proc: subprocess.Popen[bytes]
    to_chrome: int
    from_chrome: int
    session: str = ""
    answers: deque[tuple[bool, str | None]] = field(default_factory=deque)
    dialogs: list[Dialog] = field(default_factory=list)
    _buffer: bytes = b""
    _next_id: int = 0
    _unanswered: list[str] = field(default_factory=list)

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        """Send one command (to the page, once attached) and return its result."""
        mine = self._write(method, params or {})
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._read(deadline - time.monotonic()):
                if reply.get("id") == mine:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result")
                self._event(reply)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to {method} within {timeout}s")

    def _write(self, method: str, params: dict[str, Any]) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _read(self, timeout: float) -> Iterator[dict[str, Any]]:
        ready, _, _ = select.select([self.from_chrome], [], [], max(timeout, 0))
        if ready:
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        *whole, self._buffer = self._buffer.split(b"\0")
        for text in whole:
            yield json.loads(text)

    def _event(self, event: dict[str, Any]) -> None:
        if event.get("method") != "Page.javascriptDialogOpening":
            return
        params = event["params"]
        if self.answers:
            accept, text = self.answers.popleft()
        else:  # dismissed, and the test fails at its next look at the page, saying which
            accept, text = False, None
            self._unanswered.append(f"{params['type']}: {params['message']}")
        self.dialogs.append(Dialog(params["type"], params["message"], accept, text))
        answer: dict[str, Any] = {"accept": accept}
        if text is not None:
            answer["promptText"] = text
        # Not waited for: the page (and the command that opened the dialog) waits on this.
        self._write("Page.handleJavaScriptDialog", answer)

    def plan(self, *answers: tuple[bool, str | None]) -> None:
        """Answers for the next dialogs, in order: (accept, prompt text or None)."""
        self.answers.extend(answers)

    def open(self, url: str) -> None:
        """Load `url` afresh (by way of about:blank: a new fragment alone reloads nothing)."""
        self.send("Page.navigate", {"url": "about:blank"})
        self.send("Page.navigate", {"url": url})
        page = json.dumps(url.split("#")[0])
        self.wait_for(
            f"location.href.startsWith({page}) && document.readyState === 'complete'",
            what=f"{url} to load",
        )

    def clock_ahead(self, seconds: float) -> None:
        """Pages opened from now on see their clock `seconds` ahead (Date.now, new Date())."""
        shift = int(seconds * 1000)
        script = f"""(() => {{
          const RealDate = Date, shift = {shift};
          class Shifted extends RealDate {{
            constructor(...a) {{ super(...(a.length ? a : [RealDate.now() + shift])); }}
            static now() {{ return RealDate.now() + shift; }}
          }}
          globalThis.Date = Shifted;
        }})();"""
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": script})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        assert not self._unanswered, f"a dialog the test did not plan: {self._unanswered}"
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 30) -> Any:
        """Poll an expression until it is truthy; its value."""
        return eventually(lambda: self.evaluate(expression), timeout=timeout, what=what)

    def click(self, selector: str) -> None:
        """Click the first element matching `selector` (as a person would, through the DOM)."""
        found = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.click(); return true; })()"
        )
        assert found, f"nothing to click at {selector}"

    def screenshot(self, path: Path) -> None:
        """The page as it looks now, as a PNG."""
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot")["data"]))

    def text(self, selector: str) -> str:
        return str(
            self.evaluate(f"document.querySelector({json.dumps(selector)})?.innerText ?? ''")
        )


@contextlib.contextmanager
def browser(
    chromium: str, flags: list[str], width: int = 1280, height: int = 900
) -> Iterator[Browser]:
    """Chromium with one blank page attached, its dialogs under the test's control."""
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    # A small exec wrapper puts the pipe ends where Chromium expects them (fd 3 and 4): no
    # preexec_fn (unsafe in a process with threads, as pytest's is), and no shell (dash
    # redirects only fds 0-9).
    place = (
        "import fcntl, os, sys\n"
        "given = [int(fd) for fd in sys.argv[1:3]]\n"
        "r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in given)\n"
        "for fd in set(given) - {3, 4}:\n"
        "    os.close(fd)\n"
        "os.dup2(r, 3)\n"
        "os.dup2(w, 4)\n"
        "os.execv(sys.argv[3], sys.argv[3:])\n"
    )
    # Chromium's helper processes may still be writing the profile as it goes.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                place,
                str(to_chrome_r),
                str(from_chrome_w),
                chromium,
                *flags,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        b = Browser(proc, to_chrome_w, from_chrome_r)
        try:
            target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            b.session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            b.send("Page.enable")
            b.send("Runtime.enable")
            b.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            yield b
        finally:
            b.session = ""
            # A graceful close lets it finish with its profile before that is removed.
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                b.send("Browser.close", timeout=10)
            os.close(to_chrome_w)
            os.close(from_chrome_r)
            proc.terminate()
            proc.wait(timeout=30)
