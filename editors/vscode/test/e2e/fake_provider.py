"""The loopback fake provider (tests/fakes/provider.py), steered over stdin by the VS Code
suite: one JSON object per line, answered with one JSON line on stdout.

    {"reply": "text"}       the text every generation request gets from now on
    {"latency_ms": 1500}    delay before every answer from now on (0: none)
    {"stop": true}          close the listener and every connection (the provider is "down")
    {"start": true}         serve again on the same port
    {"requests": true}      how many generation requests were served so far

The first line printed is {"base_url": "http://127.0.0.1:PORT"}. Ends at EOF on stdin.
Run from the repository root: python editors/vscode/test/e2e/fake_provider.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from tests.fakes.provider import FakeProvider, Fault

MODEL = "fake-coder"


def main() -> int:
    reply = "pass"
    latency_ms = 0
    fake = FakeProvider(model=MODEL, reply=reply).start()
    port = fake.port
    print(json.dumps({"base_url": fake.base_url, "model": MODEL}), flush=True)
    for line in sys.stdin:
        command: dict[str, Any] = json.loads(line)
        answer: dict[str, Any] = {"ok": True}
        if "reply" in command:
            reply = fake.reply = str(command["reply"])
        if "latency_ms" in command:
            latency_ms = int(command["latency_ms"])
            fake.clear_faults()
            if latency_ms:
                fake.inject(Fault(latency_ms=latency_ms))
        if command.get("stop"):
            fake.stop()
        if command.get("start"):
            fake = FakeProvider(model=MODEL, reply=reply, port=port).start()
            if latency_ms:
                fake.inject(Fault(latency_ms=latency_ms))
        if command.get("requests"):
            answer["requests"] = len(fake.generation_requests())
        print(json.dumps(answer), flush=True)
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
