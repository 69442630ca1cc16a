"""llama.cpp: the exact requests sent, and what the probe reports."""

from __future__ import annotations

import httpx

from crucible.config.settings import ProviderKind
from tests.fakes.provider import FakeProvider
from tests.providers.conftest import MakeProvider
from tests.providers.support import CHAT, FIM, MODEL, collect

LLAMACPP = ProviderKind.LLAMACPP


async def test_fim_uses_the_native_infill_fields(make: MakeProvider, fake: FakeProvider) -> None:
    await collect(make(LLAMACPP).stream_fim(FIM))
    request = fake.requests[-1]
    assert (request.method, request.path) == ("POST", "/infill")
    assert request.body == {
        "input_prefix": FIM.prefix,
        "input_suffix": FIM.suffix,
        "input_extra": [{"filename": "src/util.py", "text": "X = 1\n"}],
        "n_predict": 64,
        "temperature": 0.1,
        "stop": ["\n\n"],
        "stream": True,
        "cache_prompt": True,
    }


async def test_chat_goes_to_the_same_servers_openai_route(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.reply = "Wrap the line."
    assert await collect(make(LLAMACPP).stream_chat(CHAT)) == "Wrap the line."
    request = fake.requests[-1]
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == MODEL
    assert request.body["messages"][1] == {"role": "user", "content": "Explain E501."}


async def test_probe_reports_a_ready_server(make: MakeProvider, fake: FakeProvider) -> None:
    result = await make(LLAMACPP).probe()
    assert (result.ok, result.detail) == (True, f"ok: server ready (model {MODEL})")
    assert fake.requests[-1].path == "/health"


async def test_probe_reports_a_model_still_loading(make: MakeProvider) -> None:
    def loading(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/health"
        return httpx.Response(503, json={"error": {"code": 503, "message": "Loading model"}})

    transport = httpx.MockTransport(loading)
    async with httpx.AsyncClient(base_url="http://llama", transport=transport) as client:
        result = await make(LLAMACPP, client=client).probe()
    assert (result.ok, result.detail) == (False, "server is loading the model (HTTP 503)")
