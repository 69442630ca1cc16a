"""What the ``local`` kind's managed llama.cpp server costs: start-up, first token, memory.

    python -m benchmarks.local_server                 # 5 rounds, the tiny generated model
    python -m benchmarks.local_server --quick         # 1 round (CI)
    python -m benchmarks.local_server --model PATH    # a real GGUF instead

Each round, interleaved so shared-machine load hits both alike:

- **baseline**: the same model in a llama.cpp server started by hand, the way the tests do
  (``tests/llama_server/server.py``: the xllamacpp server in a child, waited for until
  ``/health`` answers), i.e. what a user would run without the local kind;
- **managed**: a ``LocalProvider`` (``providers/local.py``) as Crucible builds it, started by
  its first request: start-up is that request's wait for ``ensure()`` (spawn, model load,
  ``/health``); first token is one FIM request (4 tokens, greedy) to the started server,
  through the ``llamacpp`` client, API key and all; memory is the child's RSS once it answered.

Printed: medians over the rounds, and managed/baseline ratios (near 1.0: supervision costs
nothing over a server started by hand). Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from contextlib import aclosing
from pathlib import Path

import httpx
from tests.llama_server.server import LlamaServerProcess
from tests.llama_server.tiny_model import write_tiny_model

from crucible.config.settings import ProviderKind, ProviderSettings
from crucible.local.process import rss_mb
from crucible.providers.base import FimRequest
from crucible.providers.local import LocalProvider

REQUEST = FimRequest(
    prefix="def add(a, b):\n    return ",
    suffix="\n\nprint(add(1, 2))\n",
    language_id="python",
    path="bench.py",
    max_tokens=4,
    temperature=0.0,
)


async def managed_round(model: Path, threads: int) -> tuple[float, float, float]:
    settings = ProviderSettings(
        name="bench", kind=ProviderKind.LOCAL, model_path=str(model), threads=threads
    )
    provider = LocalProvider(settings)
    try:
        began = time.perf_counter()
        await provider.server.ensure()
        start_s = time.perf_counter() - began
        first = await first_token_s(provider)
        rss = provider.status()["rss_mb"] or 0.0
    finally:
        await provider.aclose()
    return start_s, first, rss


async def first_token_s(provider: LocalProvider) -> float:
    began = time.perf_counter()
    async with aclosing(provider.stream_fim(REQUEST)) as chunks:
        async for _ in chunks:
            return time.perf_counter() - began
    raise RuntimeError("the server answered nothing")


async def baseline_round(model: Path, workdir: Path, threads: int) -> tuple[float, float, float]:
    server = LlamaServerProcess(model, workdir, parallel=2, threads=threads)
    began = time.perf_counter()
    await asyncio.to_thread(server.start)
    start_s = time.perf_counter() - began
    try:
        body = {
            "input_prefix": REQUEST.prefix,
            "input_suffix": REQUEST.suffix,
            "n_predict": REQUEST.max_tokens,
            "temperature": 0.0,
            "stream": True,
            "cache_prompt": True,
        }
        async with httpx.AsyncClient(base_url=server.root, trust_env=False) as client:
            # Connected first, as the managed provider is by its /health wait.
            (await client.get("/health")).raise_for_status()
            began = time.perf_counter()
            async with client.stream("POST", "/infill", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        break
            first = time.perf_counter() - began
        assert server._process is not None
        rss = rss_mb(server._process.pid) or 0.0
    finally:
        server.stop()
    return start_s, first, rss


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round (CI)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the tiny model)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = args.model or write_tiny_model(workdir / "tiny.gguf")
        figures: dict[str, list[tuple[float, float, float]]] = {"baseline": [], "managed": []}
        for _ in range(rounds):
            figures["baseline"].append(await baseline_round(model, workdir, args.threads))
            figures["managed"].append(await managed_round(model, args.threads))
    print(f"model {model.name}, {rounds} rounds, threads {args.threads}; medians:")
    print(f"{'':10} {'start-up':>10} {'first token':>12} {'RSS':>9}")
    med = {}
    for name, rows in figures.items():
        med[name] = [median([row[i] for row in rows]) for i in range(3)]
        start, first, rss = med[name]
        print(f"{name:10} {start * 1000:8.0f} ms {first * 1000:9.1f} ms {rss:6.0f} MB")
    ratios = [
        m / b if b else float("nan") for m, b in zip(med["managed"], med["baseline"], strict=True)
    ]
    print(
        f"{'ratio':10} {ratios[0]:9.2f}x {ratios[1]:11.2f}x {ratios[2]:8.2f}x  (managed / baseline)"
    )


if __name__ == "__main__":
    asyncio.run(main())
