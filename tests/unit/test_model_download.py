"""Model downloads (``local/download.py``, ``crucible-lsp models``) against a loopback server
serving the tiny model's bytes: progress, resume after a cut (within one call and across
calls), a server that ignores ``Range``, a checksum mismatch refused, no partial file under the
final name, no download without a checksum unless asked, and the proxy from the environment."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.fakes.model_files import ModelFileServer
from tests.llama_server.tiny_model import write_tiny_model

from crucible.local import download as download_module
from crucible.local.download import ChecksumMismatch, DownloadError, UnverifiedDownload, download
from crucible.local.models import ModelSource, catalogue_source, models_dir

CUT = 1_000_000


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.gguf").read_bytes()


def source(server: ModelFileServer, target: Path, payload: bytes, sha256: str = "") -> ModelSource:
    digest = sha256 or hashlib.sha256(payload).hexdigest()
    return ModelSource(
        "tiny", target / "tiny.gguf", f"{server.url}/tiny.gguf", len(payload), digest
    )


def test_a_download_reports_progress_and_lands_whole(tmp_path: Path, payload: bytes) -> None:
    seen: list[tuple[int, int | None]] = []
    with ModelFileServer(payload) as server:
        wanted = source(server, tmp_path, payload)
        path = download(wanted, progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == payload
    assert not wanted.partial.exists()
    assert seen[0] == (0, len(payload)) and seen[-1] == (len(payload), len(payload))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_a_cut_connection_is_resumed_from_where_it_stopped(tmp_path: Path, payload: bytes) -> None:
    with ModelFileServer(payload, cut_after=CUT) as server:
        path = download(source(server, tmp_path, payload))
    assert path.read_bytes() == payload
    assert [s.range for s in server.seen] == [None, f"bytes={CUT}-"]


def test_an_interrupted_download_resumes_on_the_next_call_and_is_never_under_its_name(
    tmp_path: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download_module, "RETRIES", 0)
    with ModelFileServer(payload, cut_after=CUT) as server:
        wanted = source(server, tmp_path, payload)
        with pytest.raises(DownloadError, match="run the same command again"):
            download(wanted)
        assert not wanted.path.exists()
        assert wanted.partial.stat().st_size == CUT
        download(wanted)
    assert wanted.path.read_bytes() == payload and not wanted.partial.exists()
    assert server.seen[-1].range == f"bytes={CUT}-"


def test_a_server_that_ignores_range_is_read_from_the_start(tmp_path: Path, payload: bytes) -> None:
    with ModelFileServer(payload, ignore_range=True) as server:
        wanted = source(server, tmp_path, payload)
        wanted.partial.write_bytes(b"not the start of the file" * 40)
        download(wanted)
    assert wanted.path.read_bytes() == payload


def test_a_checksum_mismatch_is_refused_and_nothing_is_left(tmp_path: Path, payload: bytes) -> None:
    with ModelFileServer(payload) as server:
        wanted = source(server, tmp_path, payload, sha256="0" * 64)
        with pytest.raises(ChecksumMismatch, match="SHA-256"):
            download(wanted)
    assert not wanted.path.exists() and not wanted.partial.exists()


def test_no_checksum_no_download_unless_the_user_says_so(tmp_path: Path, payload: bytes) -> None:
    with ModelFileServer(payload) as server:
        wanted = ModelSource("tiny", tmp_path / "tiny.gguf", f"{server.url}/tiny.gguf")
        with pytest.raises(UnverifiedDownload, match="--no-verify"):
            download(wanted)
        assert server.seen == []
        download(wanted, verify=False)
    assert wanted.path.read_bytes() == payload


def test_catalogue_models_download_into_the_xdg_cache(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "HOME": "/nonexistent"}
    model = catalogue_source("qwen2.5-coder-0.5b", env)
    assert model.path == tmp_path / "crucible" / "models" / "qwen2.5-coder-0.5b-q8_0.gguf"
    assert len(model.sha256) == 64 and model.size


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "crucible", "models", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_the_command_line_pulls_through_the_proxy_lists_and_removes(
    tmp_path: Path, payload: bytes
) -> None:
    """The proxy from the environment carries the download (the URL's host does not even
    resolve); progress goes to stderr; ``list`` shows the file; ``rm`` deletes it."""
    url = "http://models.example.invalid/tiny.gguf"
    digest = hashlib.sha256(payload).hexdigest()
    with ModelFileServer(payload) as proxy:
        pulled = run_cli(tmp_path, "pull", url, "--sha256", digest, http_proxy=proxy.url)
    target = models_dir({"XDG_CACHE_HOME": str(tmp_path / "cache")}) / "tiny.gguf"
    assert pulled.returncode == 0, pulled.stderr
    assert target.read_bytes() == payload
    assert proxy.seen[0].path == url  # an absolute URI: the request went to the proxy
    assert "tiny.gguf: 100 %" in pulled.stderr and "  0 %" in pulled.stderr

    listed = run_cli(tmp_path, "list")
    assert "tiny.gguf" in listed.stdout and "qwen2.5-coder-1.5b" in listed.stdout

    removed = run_cli(tmp_path, "rm", "tiny.gguf")
    assert removed.returncode == 0 and not target.exists()


def test_the_command_line_refuses_an_unverified_url(tmp_path: Path) -> None:
    refused = run_cli(tmp_path, "pull", "http://127.0.0.1:9/x.gguf")
    assert refused.returncode == 1 and "--no-verify" in refused.stderr
