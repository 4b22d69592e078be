"""vlzoo.core.weights.hub against a loopback HTTP server: caching, resume, checksums, offline, locking.

Nothing here leaves 127.0.0.1: URL specs point at a ThreadingHTTPServer started by the test, and the
Hugging Face path is pointed at the same server through huggingface_hub's endpoint constants.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest
from helpers import http_server

from vlzoo.core.errors import ChecksumError, DownloadError
from vlzoo.core.weights import hub
from vlzoo.core.weights.hub import WeightSpec, cache_dir, cache_path, download, is_offline

sha256_hex = http_server.sha256_hex

PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = sha256_hex(PAYLOAD)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """A private cache, no offline flags, no proxy in the way of 127.0.0.1, and instant backoff."""
    for name in ("VLZOO_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("VLZOO_HOME", str(tmp_path / "vlzoo-home"))
    monkeypatch.setattr(hub, "_BACKOFF_BASE_S", 0.01)


@pytest.fixture
def server():
    with http_server.LoopbackServer() as srv:
        yield srv


def _url_spec(server, path="/w/model.safetensors", body=PAYLOAD, sha=None, **route_options):
    server.add(path, body, **route_options)
    return WeightSpec.from_url(server.url(path), sha or sha256_hex(body))


def _gets(server, path="/w/model.safetensors"):
    return server.log(method="GET", path=path)


# ------------------------------------------------------------------------------------------ spec


def test_spec_validation():
    with pytest.raises(ValueError, match="sha256"):
        WeightSpec("a.safetensors", url="https://example.invalid/a.safetensors")
    with pytest.raises(ValueError, match="exactly one"):
        WeightSpec("a.safetensors", sha256="0" * 64, url="https://x.invalid/a", hf_hub_id="org/repo")
    with pytest.raises(ValueError, match="exactly one"):
        WeightSpec("a.safetensors")
    with pytest.raises(ValueError, match="format"):
        WeightSpec("a.bin", hf_hub_id="org/repo", format="onnx")
    with pytest.raises(ValueError, match="not a hex sha256"):
        WeightSpec("a.bin", hf_hub_id="org/repo", sha256="abc")
    with pytest.raises(ValueError, match="relative path"):
        WeightSpec("../evil.bin", sha256="0" * 64, url="https://x.invalid/a")
    with pytest.raises(ValueError, match="bare file name"):
        WeightSpec("sub/a.bin", sha256="0" * 64, url="https://x.invalid/a")
    with pytest.raises(ValueError, match="http"):
        WeightSpec("a.bin", sha256="0" * 64, url="file:///etc/passwd")


def test_spec_parsing_and_normalisation():
    spec = WeightSpec.parse("hf-hub:org/repo@v1.0/sub/open_clip_model.safetensors")
    assert (spec.hf_hub_id, spec.revision, spec.filename) == (
        "org/repo",
        "v1.0",
        "sub/open_clip_model.safetensors",
    )
    assert spec.format == "safetensors"
    assert spec.source == "hf-hub:org/repo@v1.0/sub/open_clip_model.safetensors"
    assert WeightSpec.from_hf_hub("org/repo/pytorch_model.bin").format == "pt"

    overrides = {"quick_gelu": True}
    url_spec = WeightSpec.parse(
        "https://x.invalid/dl/ViT-B-32.pt", sha256="AB" * 32, config_overrides=overrides
    )
    overrides["quick_gelu"] = False  # the frozen spec keeps its own copy
    assert url_spec.filename == "ViT-B-32.pt"
    assert url_spec.format == "pt"
    assert url_spec.sha256 == "ab" * 32
    assert url_spec.config_overrides == {"quick_gelu": True}
    assert hash(url_spec) == hash(WeightSpec.parse("https://x.invalid/dl/ViT-B-32.pt", sha256="ab" * 32))
    with pytest.raises(ValueError, match="sha256"):
        WeightSpec.parse("https://x.invalid/dl/ViT-B-32.pt")


def test_cache_dir_and_offline_flags(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path / "vlzoo-home"
    monkeypatch.delenv("VLZOO_HOME")
    assert cache_dir() == Path.home() / ".cache" / "vlzoo"
    assert not is_offline()
    for value in ("0", "", "false", "no"):
        monkeypatch.setenv("VLZOO_OFFLINE", value)
        assert not is_offline()
    for name in ("VLZOO_OFFLINE", "HF_HUB_OFFLINE"):
        for value in ("1", "true", "YES", " on "):
            monkeypatch.delenv("VLZOO_OFFLINE", raising=False)
            monkeypatch.setenv(name, value)
            assert is_offline(), (name, value)
        monkeypatch.delenv(name)


def test_cache_path_is_keyed_by_digest(tmp_path):
    a = WeightSpec("model.safetensors", sha256="a" * 64, url="https://x.invalid/one/model.safetensors")
    b = WeightSpec("model.safetensors", sha256="b" * 64, url="https://x.invalid/two/model.safetensors")
    assert cache_path(a) == tmp_path / "vlzoo-home" / "weights" / ("a" * 16) / "model.safetensors"
    assert cache_path(a) != cache_path(b)
    assert (
        cache_path(a, cache_dir=tmp_path / "elsewhere")
        == tmp_path / "elsewhere" / ("a" * 16) / "model.safetensors"
    )


# -------------------------------------------------------------------------------------- download


def test_download_verifies_caches_and_skips_network(server, monkeypatch):
    spec = _url_spec(server)
    path = download(spec, progress=False)
    assert path == cache_path(spec)
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name(path.name + ".part").exists()
    assert len(server.requests) == 1

    # The second call trusts the sidecar: no request and no re-hash of the file.
    def no_hashing(_path):
        raise AssertionError("a verified cached file was hashed again")

    with monkeypatch.context() as m:
        m.setattr(hub, "_sha256_file", no_hashing)
        assert download(spec, progress=False) == path
    assert len(server.requests) == 1


def test_tampered_cache_file_is_detected_and_replaced(server):
    spec = _url_spec(server)
    path = download(spec, progress=False)
    corrupted = bytes([PAYLOAD[0] ^ 0xFF]) + PAYLOAD[1:]
    path.write_bytes(corrupted)  # same size, new mtime: the sidecar no longer vouches for it
    assert download(spec, progress=False).read_bytes() == PAYLOAD
    assert len(_gets(server)) == 2


def test_progress_line_on_stderr(server, capsys):
    download(_url_spec(server), progress=True)
    err = capsys.readouterr().err
    assert "downloading model.safetensors" in err
    assert "0.3 MB" in err


def test_resume_after_dropped_connection(server):
    spec = _url_spec(server, drop_first_get_after=100_000)
    path = download(spec, progress=False)
    assert path.read_bytes() == PAYLOAD
    first, second = _gets(server)
    assert first.range is None
    assert first.bytes_sent == 100_000
    assert second.range == "bytes=100000-"
    assert second.status == 206
    assert second.bytes_sent == len(PAYLOAD) - 100_000


def test_leftover_part_from_an_earlier_run_is_resumed(server):
    spec = _url_spec(server)
    part = cache_path(spec).with_name("model.safetensors.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:123_456])
    assert download(spec, progress=False).read_bytes() == PAYLOAD
    (only,) = _gets(server)
    assert only.range == "bytes=123456-"
    assert only.bytes_sent == len(PAYLOAD) - 123_456


def test_complete_leftover_part_is_not_downloaded_again(server):
    spec = _url_spec(server)
    part = cache_path(spec).with_name("model.safetensors.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)
    assert download(spec, progress=False).read_bytes() == PAYLOAD
    (only,) = _gets(server)
    assert only.status == 416
    assert only.bytes_sent == 0


def test_server_ignoring_range_restarts_from_zero(server):
    spec = _url_spec(server, drop_first_get_after=100_000, ignore_range=True)
    assert download(spec, progress=False).read_bytes() == PAYLOAD
    first, second = _gets(server)
    assert first.bytes_sent == 100_000
    assert second.range == "bytes=100000-"
    assert second.status == 200
    assert second.bytes_sent == len(PAYLOAD)


def test_http_404_is_not_retried(server):
    spec = WeightSpec.from_url(server.url("/w/missing.safetensors"), PAYLOAD_SHA)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(spec, progress=False, retries=3)
    assert len(server.requests) == 1


def test_dead_server_retries_then_fails(monkeypatch):
    # Bind a port, then close it: connections are refused without leaving the machine.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = WeightSpec.from_url(f"http://127.0.0.1:{port}/model.safetensors", PAYLOAD_SHA)
    sleeps: list[float] = []
    monkeypatch.setattr(hub.time, "sleep", sleeps.append)
    with pytest.raises(DownloadError, match="after 2 retries"):
        download(spec, progress=False, retries=2, timeout=2)
    assert len(sleeps) == 2
    assert sleeps[1] > sleeps[0]  # backoff grows


def test_checksum_mismatch_leaves_cache_untouched(server):
    good = download(_url_spec(server, "/w/good.safetensors"), progress=False)
    good_mtime = good.stat().st_mtime_ns

    wrong_sha = sha256_hex(b"what the registry promised")
    bad_spec = _url_spec(server, "/w/model.safetensors", sha=wrong_sha)
    target = cache_path(bad_spec)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"an older file that was already here")

    with pytest.raises(ChecksumError) as info:
        download(bad_spec, progress=False)
    message = str(info.value)
    assert wrong_sha in message
    assert PAYLOAD_SHA in message
    assert bad_spec.url in message
    assert not target.with_name(target.name + ".part").exists()
    assert target.read_bytes() == b"an older file that was already here"
    assert good.read_bytes() == PAYLOAD
    assert good.stat().st_mtime_ns == good_mtime


def test_checksum_mismatch_after_stale_part_retries_clean_once(server):
    spec = _url_spec(server)
    part = cache_path(spec).with_name("model.safetensors.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"X" * 1000)  # junk from some earlier run
    assert download(spec, progress=False).read_bytes() == PAYLOAD
    first, second = _gets(server)
    assert first.range == "bytes=1000-"
    assert second.range is None


@pytest.mark.parametrize("env_var", ["VLZOO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_never_touches_network(server, monkeypatch, env_var):
    spec = _url_spec(server)
    monkeypatch.setenv(env_var, "1")
    with pytest.raises(DownloadError) as info:
        download(spec, progress=False)
    message = str(info.value)
    assert "model.safetensors" in message
    assert spec.url in message
    assert env_var in message
    assert server.requests == []

    monkeypatch.delenv(env_var)
    path = download(spec, progress=False)
    assert len(server.requests) == 1

    monkeypatch.setenv(env_var, "1")
    assert download(spec, progress=False) == path
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_two_processes_download_once(server, tmp_path, monkeypatch):
    ready = tmp_path / "ready"
    ready.mkdir()

    def wait_for_both_clients():
        # Hold the body until both processes have entered download(), so that they truly overlap.
        deadline = time.monotonic() + 20
        while len(list(ready.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)

    # 300 kB in 16 kB chunks 20 ms apart: about 0.4 s of body for the other process to wait through.
    spec = _url_spec(server, chunk_delay=0.02, before_body=wait_for_both_clients)
    # fork starts in milliseconds; a spawned child would re-import vlzoo.core (torch, timm...) for seconds.
    # The child only runs urllib/filelock code, so the parent's threads and torch state do not matter.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    outs = [tmp_path / f"out{i}.txt" for i in range(2)]
    procs = [
        ctx.Process(
            target=http_server.download_when_told,
            args=(spec, str(tmp_path / "shared-home"), str(ready), f"p{i}", str(outs[i])),
        )
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    paths = {Path(o.read_text()) for o in outs}
    assert len(paths) == 1
    assert paths.pop().read_bytes() == PAYLOAD
    gets = _gets(server)
    assert len(gets) == 1, gets
    assert gets[0].bytes_sent == len(PAYLOAD)


def test_threads_share_one_download(server):
    # The same lock also serialises threads of one process (FileLock is per-instance re-entrant only).
    spec = _url_spec(server, chunk_delay=0.005)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(download(spec, progress=False))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    assert len(set(results)) == 1
    assert results[0].read_bytes() == PAYLOAD
    assert len(_gets(server)) == 1


# ---------------------------------------------------------------------------------- hugging face

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_server(server, tmp_path, monkeypatch):
    """Point huggingface_hub at the loopback server and at an empty cache.

    huggingface_hub reads HF_ENDPOINT / HF_HUB_CACHE / HF_HUB_OFFLINE into module constants when it is
    imported, so the constants are patched rather than the environment.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "ENDPOINT", server.base_url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.base_url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    server.not_found_headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}
    return server


def _hf_route(server, filename="open_clip_model.safetensors", body=PAYLOAD, repo="org/repo"):
    headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{sha256_hex(body)}"'}
    path = f"/{repo}/resolve/main/{filename}"
    server.add(path, body, headers=headers)
    return path


def test_hf_hub_download_verifies_and_goes_offline(hf_server, tmp_path, monkeypatch):
    route = _hf_route(hf_server)
    spec = WeightSpec.parse("hf-hub:org/repo/open_clip_model.safetensors", sha256=PAYLOAD_SHA)
    path = download(spec, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert path.is_relative_to(tmp_path / "hf-home" / "hub")  # huggingface_hub's cache, not vlzoo's
    assert len(hf_server.log(method="GET", path=route)) == 1
    served = len(hf_server.requests)

    monkeypatch.setenv("VLZOO_OFFLINE", "1")
    assert download(spec, progress=False) == path
    assert len(hf_server.requests) == served

    missing = WeightSpec.parse("hf-hub:org/repo/not_downloaded.safetensors")
    with pytest.raises(DownloadError, match="VLZOO_OFFLINE") as info:
        download(missing, progress=False)
    assert "hf-hub:org/repo/not_downloaded.safetensors" in str(info.value)
    assert len(hf_server.requests) == served


def test_hf_hub_checksum_mismatch(hf_server):
    _hf_route(hf_server)
    wrong = sha256_hex(b"something else")
    spec = WeightSpec.parse("hf-hub:org/repo/open_clip_model.safetensors", sha256=wrong)
    with pytest.raises(ChecksumError) as info:
        download(spec, progress=False)
    assert wrong in str(info.value)
    assert PAYLOAD_SHA in str(info.value)


def test_hf_hub_missing_file_is_a_download_error(hf_server):
    spec = WeightSpec.parse("hf-hub:org/repo/absent.safetensors")
    with pytest.raises(DownloadError, match=r"no file 'absent\.safetensors' in org/repo"):
        download(spec, progress=False)


def test_offline_hf_lookup_never_calls_huggingface_hub(hf_server, monkeypatch):
    """Even `hf_hub_download(local_files_only=True)` may resolve the hub's host: offline, it is not called."""
    import huggingface_hub

    _hf_route(hf_server)
    spec = WeightSpec.parse("hf-hub:org/repo/open_clip_model.safetensors", sha256=PAYLOAD_SHA)
    cached = download(spec, progress=False)
    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setenv("VLZOO_OFFLINE", "1")

    assert download(spec, progress=False) == cached
    with pytest.raises(DownloadError) as info:
        download(WeightSpec.parse("hf-hub:org/repo/never_fetched.safetensors"), progress=False)
    assert calls == []
    message = str(info.value)
    assert "\n" not in message and "never_fetched.safetensors" in message and "VLZOO_OFFLINE=1" in message
