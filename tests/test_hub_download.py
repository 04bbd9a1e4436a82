"""restorekit.hub.fetch against a real HTTP server on 127.0.0.1: resume, verification, failures, locking."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hub_server import closed_port, sha256, start_server

from restorekit.hub import DownloadError, fetch, offline

DATA = os.urandom(300_000)


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.delenv("RESTOREKIT_OFFLINE", raising=False)
    state, http = start_server()
    yield state
    http.shutdown()
    http.server_close()


def _leftovers(folder: Path) -> list[str]:
    """Files other than the finished target and lock files: partial or temporary downloads."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_download_verifies_and_renames(server, tmp_path):
    url = server.add("w.pth", DATA)
    target = tmp_path / "cache" / "w.pth"
    assert fetch(url, target, sha256=sha256(DATA), size=len(DATA)) == target
    assert target.read_bytes() == DATA
    assert _leftovers(target.parent) == ["w.pth"]
    # A second call uses the verified file without asking the server again.
    assert fetch(url, target, sha256=sha256(DATA)) == target
    assert len(server.gets("w.pth")) == 1


def test_progress_bar_does_not_break_the_download(server, tmp_path):
    url = server.add("w.pth", DATA)
    assert fetch(url, tmp_path / "w.pth", sha256=sha256(DATA), progress=True).read_bytes() == DATA


def test_cut_connection_is_resumed_with_a_range_request(server, tmp_path):
    url = server.add("w.pth", DATA, cut_after=100_000)
    target = tmp_path / "w.pth"
    fetch(url, target, sha256=sha256(DATA))
    assert target.read_bytes() == DATA
    ranges = [r.range for r in server.gets("w.pth")]
    assert ranges == [None, "bytes=100000-"]


def test_truncated_transfer_keeps_the_part_file_and_the_next_call_resumes(server, tmp_path):
    url = server.add("w.pth", DATA, cut_after=50_000, cut_times=10)
    target = tmp_path / "w.pth"
    with pytest.raises(DownloadError) as info:
        fetch(url, target, sha256=sha256(DATA))
    message = str(info.value)
    assert "\n" not in message and url in message and str(target) in message and "broke off" in message
    assert not target.exists()
    part = tmp_path / "w.pth.part"
    have = part.stat().st_size
    assert 0 < have < len(DATA) and DATA.startswith(part.read_bytes())
    server.behaviour["/w.pth"].cut_times = 0  # the server behaves again
    fetch(url, target, sha256=sha256(DATA))
    assert target.read_bytes() == DATA and not part.exists()
    assert server.gets("w.pth")[-1].range == f"bytes={have}-"


def test_server_ignoring_range_starts_over(server, tmp_path):
    url = server.add("w.pth", DATA, ignore_range=True)
    (tmp_path / "w.pth.part").write_bytes(DATA[:1000])
    target = fetch(url, tmp_path / "w.pth", sha256=sha256(DATA))
    assert target.read_bytes() == DATA  # 200 to a Range request: the partial bytes were replaced, not appended
    assert server.gets("w.pth")[0].range == "bytes=1000-"


def test_partial_file_that_is_not_a_prefix_is_refused_and_deleted(server, tmp_path):
    url = server.add("w.pth", DATA)
    (tmp_path / "w.pth.part").write_bytes(b"garbage!" * 10)
    with pytest.raises(DownloadError, match="SHA-256"):
        fetch(url, tmp_path / "w.pth", sha256=sha256(DATA))
    assert _leftovers(tmp_path) == []
    fetch(url, tmp_path / "w.pth", sha256=sha256(DATA))  # and the next try starts clean
    assert (tmp_path / "w.pth").read_bytes() == DATA


def test_hash_mismatch_is_refused_and_nothing_is_kept(server, tmp_path):
    url = server.add("w.pth", b"not the weights" * 1000)
    target = tmp_path / "w.pth"
    with pytest.raises(DownloadError) as info:
        fetch(url, target, sha256=sha256(DATA))
    message = str(info.value)
    assert "\n" not in message and url in message and str(target) in message and sha256(DATA) in message
    assert _leftovers(tmp_path) == []


def test_size_mismatch_is_refused(server, tmp_path):
    url = server.add("w.pth", DATA)
    with pytest.raises(DownloadError, match="bytes"):
        fetch(url, tmp_path / "w.pth", sha256=sha256(DATA), size=len(DATA) + 1)
    assert _leftovers(tmp_path) == []


def test_hash_prefix_check(server, tmp_path):
    url = server.add("w.pth", DATA)
    with pytest.raises(DownloadError, match="starting with 00000000"):
        fetch(url, tmp_path / "a.pth", sha256_prefix="00000000")
    assert fetch(url, tmp_path / "b.pth", sha256_prefix=sha256(DATA)[:8]).read_bytes() == DATA


def test_http_404_names_url_and_manual_path(server, tmp_path):
    url = server.url("missing.pth")
    target = tmp_path / "missing.pth"
    with pytest.raises(DownloadError) as info:
        fetch(url, target, sha256=sha256(DATA))
    message = str(info.value)
    assert "HTTP 404" in message and url in message and str(target) in message and "\n" not in message
    assert _leftovers(tmp_path) == []


def test_unreachable_host(tmp_path, monkeypatch):
    monkeypatch.delenv("RESTOREKIT_OFFLINE", raising=False)
    url = f"http://127.0.0.1:{closed_port()}/w.pth"
    with pytest.raises(DownloadError) as info:
        fetch(url, tmp_path / "w.pth", sha256=sha256(DATA))
    assert "cannot connect" in str(info.value) and url in str(info.value) and str(tmp_path / "w.pth") in str(info.value)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_offline_forbids_the_network(server, tmp_path, monkeypatch, value):
    monkeypatch.setenv("RESTOREKIT_OFFLINE", value)
    assert offline()
    url = server.add("w.pth", DATA)
    with pytest.raises(DownloadError) as info:
        fetch(url, tmp_path / "w.pth", sha256=sha256(DATA))
    assert "RESTOREKIT_OFFLINE" in str(info.value) and url in str(info.value) and str(tmp_path / "w.pth") in str(info.value)
    assert server.requests == []


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_offline_false_values(monkeypatch, value):
    monkeypatch.setenv("RESTOREKIT_OFFLINE", value)
    assert not offline()


def test_manually_placed_file_is_verified_and_used_offline(server, tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREKIT_OFFLINE", "1")
    url = server.add("w.pth", DATA)
    target = tmp_path / "w.pth"
    target.write_bytes(DATA)
    assert fetch(url, target, sha256=sha256(DATA)) == target
    target.write_bytes(DATA[:-1] + b"\0")  # a wrong file by hand is refused, and left for the user to replace
    with pytest.raises(DownloadError, match="is not the file from"):
        fetch(url, target, sha256=sha256(DATA))
    assert target.exists() and server.requests == []


def test_refuses_to_download_without_a_hash(tmp_path):
    with pytest.raises(ValueError, match="SHA-256"):
        fetch("http://127.0.0.1:1/x", tmp_path / "x")


def test_concurrent_fetches_download_once(server, tmp_path):
    url = server.add("w.pth", DATA, delay=0.5)
    target = tmp_path / "w.pth"
    results: list[object] = []

    def worker() -> None:
        try:
            results.append(fetch(url, target, sha256=sha256(DATA)))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [target] * 3
    assert target.read_bytes() == DATA and len(server.gets("w.pth")) == 1


def test_concurrent_processes_download_once(server, tmp_path):
    url = server.add("w.pth", DATA, delay=1.0)
    target = tmp_path / "w.pth"
    code = (
        "import sys; from restorekit.hub import fetch; "
        f"fetch({url!r}, {str(target)!r}, sha256={sha256(DATA)!r}); print('ok')"
    )
    env = {k: v for k, v in os.environ.items() if k != "RESTOREKIT_OFFLINE"}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert target.read_bytes() == DATA and len(server.gets("w.pth")) == 1
