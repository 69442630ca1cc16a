"""The loopback fake provider (tests/fakes/provider.py), steered over stdin by the VS Code
suite: one JSON object per line, answered with one JSON line on stdout.

    {"reply": "text"}       the text every generation request gets from now on
    {"replies": [["regex", "text"], ...]}
                            the text for a request whose prompt (the code before the cursor)
                            matches the regex at its end, first match wins; "reply" otherwise
                            (a test that says what each spot gets does not race the editor)
    {"chat_replies": [["regex", "text"], ...]}
                            the answer to a chat request (hover explanations, code actions)
                            whose messages (system and user, joined) contain a match of the
                            regex, first match wins; "reply" otherwise
    {"latency_ms": 1500}    delay before every answer from now on (0: none)
    {"stop": true}          close the listener and every connection (the provider is "down")
    {"start": true}         serve again on the same port
    {"requests": true}      how many generation requests were served so far ("requests",
                            chat ones included) and how many of them were chat ("chat")

The first line printed is {"base_url": "http://127.0.0.1:PORT"}. Ends at EOF on stdin.
Run from the repository root: python editors/vscode/test/e2e/fake_provider.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from tests.fakes.provider import FakeProvider, Fault, RecordedRequest

MODEL = "fake-coder"


def is_chat(request: RecordedRequest) -> bool:
    return isinstance(request.body, dict) and isinstance(request.body.get("messages"), list)


class Replies:
    """The answer for each request: a completion's by what comes before the cursor, a chat's
    by what its messages say, else the default."""

    def __init__(self) -> None:
        self.default = "pass"
        self.rules: list[tuple[re.Pattern[str], str]] = []
        self.chat_rules: list[tuple[re.Pattern[str], str]] = []

    def __call__(self, request: RecordedRequest) -> str:
        body = request.body if isinstance(request.body, dict) else {}
        if is_chat(request):
            said = "\n".join(
                str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict)
            )
            rules, text = self.chat_rules, said
        else:
            rules, text = self.rules, str(body.get("prompt", ""))
        for pattern, answer in rules:
            if pattern.search(text):
                return answer
        return self.default


def main() -> int:
    replies = Replies()
    latency_ms = 0
    fake = FakeProvider(model=MODEL, reply=replies).start()
    port = fake.port
    print(json.dumps({"base_url": fake.base_url, "model": MODEL}), flush=True)
    for line in sys.stdin:
        command: dict[str, Any] = json.loads(line)
        answer: dict[str, Any] = {"ok": True}
        if "reply" in command:
            replies.default = str(command["reply"])
        if "replies" in command:
            replies.rules = [(re.compile(rf"{p}\Z"), str(t)) for p, t in command["replies"]]
        if "chat_replies" in command:
            replies.chat_rules = [(re.compile(p), str(t)) for p, t in command["chat_replies"]]
        if "latency_ms" in command:
            latency_ms = int(command["latency_ms"])
            fake.clear_faults()
            if latency_ms:
                fake.inject(Fault(latency_ms=latency_ms))
        if command.get("stop"):
            fake.stop()
        if command.get("start"):
            fake = FakeProvider(model=MODEL, reply=replies, port=port).start()
            if latency_ms:
                fake.inject(Fault(latency_ms=latency_ms))
        if command.get("requests"):
            served = fake.generation_requests()
            answer["requests"] = len(served)
            answer["chat"] = sum(1 for r in served if is_chat(r))
        print(json.dumps(answer), flush=True)
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
