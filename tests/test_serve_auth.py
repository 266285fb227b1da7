"""Who may call `serve`: loopback by default, a bearer key (constant-time) beyond it; the CLI."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
import pytest

from ff_lib.errors import InvalidInput
from ff_lib.inference.host import new_host
from ff_lib.serve import check_bind, is_loopback
from tests.fixtures_serve import copy_demo, free_port, serving

KEY = "s3cret-key"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def keyed(demo_workspace, tmp_path_factory):
    workspace = copy_demo(demo_workspace, tmp_path_factory.mktemp("auth") / "workspace")
    with serving(workspace, new_host(), api_key=KEY) as server:
        yield server


def test_the_right_key_is_let_in(keyed):
    assert "capitals-lora" in {m.id for m in keyed.client().models.list()}
    reply = keyed.client().chat.completions.create(
        model="capitals-lora",
        messages=[{"role": "user", "content": "What is the capital of Spain?"}],
        temperature=0,
    )
    assert reply.choices[0].message.content == "The capital of Spain is Madrid."


@pytest.mark.parametrize("key", ["wrong", KEY + "x", KEY[:-1]])
def test_a_wrong_key_is_401_in_openais_shape(keyed, key):
    with pytest.raises(openai.AuthenticationError) as caught:
        keyed.client(api_key=key).models.list()
    assert caught.value.body["code"] == "invalid_api_key"
    assert caught.value.body["message"] == "Incorrect API key provided."


def test_no_key_is_401_on_every_route(keyed):
    for path in ("/v1/models", "/health"):
        status, body = get(keyed.url + path)
        assert status == 401 and "Authorization: Bearer" in body["error"]["message"]
    status, _ = get(keyed.url + "/v1/models", {"Authorization": f"Basic {KEY}"})
    assert status == 401
    status, _ = get(keyed.url + "/v1/models", {"Authorization": f"bearer {KEY}"})
    assert status == 200
    for path in ("/docs", "/openapi.json"):  # nothing is served outside the key check
        assert get(keyed.url + path)[0] == 404


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.9", "::1", "localhost"])
def test_loopback_needs_no_key(host):
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1"])
def test_beyond_loopback_a_key_is_required(host):
    assert not is_loopback(host)
    with pytest.raises(InvalidInput, match="--api-key"):
        check_bind(host, None)
    check_bind(host, KEY)


def run_cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ff_lib", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def test_the_cli_refuses_to_listen_beyond_loopback_without_a_key(tmp_path):
    result = run_cli("--workspace", str(tmp_path / "ws"), "serve", "--host", "0.0.0.0")
    assert result.returncode == 1
    assert "--api-key" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "ws").exists()  # refused before anything was opened
    empty = run_cli("--workspace", str(tmp_path / "ws"), "serve", "--api-key", " ")
    assert empty.returncode == 1 and "--api-key is empty" in empty.stderr


def test_a_port_in_use_or_out_of_range_is_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_cli("--workspace", str(tmp_path / "ws"), "serve", "--port", str(port))
    assert busy.returncode == 1 and "Traceback" not in busy.stderr
    assert f"Cannot listen on 127.0.0.1:{port}" in busy.stderr and "Serving" not in busy.stderr
    wrong = run_cli("--workspace", str(tmp_path / "ws"), "serve", "--port", "99999")
    assert wrong.returncode == 2 and "--port" in wrong.stderr and "Traceback" not in wrong.stderr


def test_the_cli_serves_the_workspace(demo_workspace, tmp_path):
    workspace = copy_demo(demo_workspace, tmp_path / "workspace")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ff_lib", "--workspace", str(workspace), "serve",
         "--port", str(port), "--api-key", KEY],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status, body = get(
                    f"http://127.0.0.1:{port}/v1/models", {"Authorization": f"Bearer {KEY}"}
                )
                break
            except urllib.error.URLError:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.3)
        assert status == 200
        assert {"capitals-lora", "pirate-lora"} <= {m["id"] for m in body["data"]}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert f"at http://127.0.0.1:{port}/v1" in stderr and "capitals-lora" in stderr
