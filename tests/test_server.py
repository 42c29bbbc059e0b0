"""The local OpenAI-compatible server, over real HTTP."""

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import faults
import httpx
import openai
import pytest

import chat_api
import frontier
import llama_tokens
import server
from chat import messages_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def served():
    seen = []

    def predictor(item):
        seen.append(item)
        if item.title == "Widget 3":
            raise ValueError("no features")
        return {"Widget 1": -5.0, "Widget 2": math.nan}.get(item.title) or faults.widget_price(item)

    with server.start(predictor, model="widgets", api_key="key") as running:
        yield running, seen


def post(running, path="/chat/completions", key="key", **body):
    return httpx.post(f"{running.base_url}{path}", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {key}"})


def test_lists_its_model(served):
    running, _ = served
    reply = httpx.get(f"{running.base_url}/models", headers={"Authorization": "Bearer key"})
    assert [m["id"] for m in reply.json()["data"]] == ["widgets"]


def test_answers_a_chat_completion_with_usage(served):
    running, seen = served
    item = faults.make_items(1, start=4)[0]
    messages = messages_for(item)
    reply = post(running, model="widgets", messages=messages, max_tokens=5, seed=42)
    assert reply.status_code == 200
    answer = reply.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Price is $20.00"}
    prompt = sum(llama_tokens.count(m["content"]) for m in messages)
    assert answer["usage"] == {"prompt_tokens": prompt, "completion_tokens": 6,
                               "total_tokens": prompt + 6}
    assert seen[-1].test_prompt() == item.test_prompt()


def test_answers_anthropic_messages_continuing_the_prefill(served):
    running, _ = served
    system, *turns = messages_for(faults.make_items(1, start=4)[0])
    reply = httpx.post(running.base_url.removesuffix("/v1") + "/v1/messages",
                       headers={"x-api-key": "key"}, timeout=10,
                       json={"model": "widgets", "system": system["content"], "messages": turns,
                             "max_tokens": 5})
    assert reply.json()["content"] == [{"type": "text", "text": "20.00"}]
    assert reply.json()["usage"]["output_tokens"] == llama_tokens.count("20.00")


def test_refuses_what_it_cannot_answer(served):
    running, _ = served
    messages = messages_for(faults.make_items(1)[0])
    cases = [
        (post(running, key="wrong", model="widgets", messages=messages), 401, "invalid_api_key"),
        (post(running, model="gpt-4o", messages=messages), 404, "model_not_found"),
        (post(running, model="widgets", messages=messages[:1]), 400, "invalid_messages"),
        (post(running, model="widgets", messages=messages, stream=True), 400, "unsupported"),
    ]
    for reply, status, code in cases:
        assert (reply.status_code, reply.json()["error"]["code"]) == (status, code)
    assert post(running, model="widgets").status_code == 422


def test_prices_are_never_negative_nor_nan(served):
    running, _ = served
    low, nan = faults.make_items(2, start=1)
    reply = post(running, model="widgets", messages=messages_for(low))
    assert reply.json()["choices"][0]["message"]["content"] == "Price is $0.00"
    reply = post(running, model="widgets", messages=messages_for(nan))
    assert (reply.status_code, reply.json()["error"]["code"]) == (500, "predictor_error")
    assert "returned nan" in reply.json()["error"]["message"]


def test_a_predictors_error_stays_in_the_servers_log(served, caplog):
    running, _ = served
    failing = faults.make_items(1, start=3)[0]
    reply = post(running, model="widgets", messages=messages_for(failing))
    assert (reply.status_code, reply.json()["error"]["code"]) == (500, "predictor_error")
    assert "no features" not in reply.text
    assert "no features" in caplog.text


def test_request_bodies_are_limited(served):
    running, _ = served
    messages = messages_for(faults.make_items(1)[0])
    messages[1]["content"] += " padding" * 200_000  # 1.6 MB
    reply = post(running, model="widgets", messages=messages)
    assert (reply.status_code, reply.json()["error"]["code"]) == (413, "request_too_large")
    chunked = httpx.post(f"{running.base_url}/chat/completions", timeout=10,
                         content=(part for part in [b'{"model": ', b'"widgets"}']),
                         headers={"Authorization": "Bearer key"})
    assert (chunked.status_code, chunked.json()["error"]["code"]) == (411, "length_required")


@pytest.mark.parametrize("part", [{"type": "text", "text": 5}, {"type": "text", "text": None},
                                  {"type": "text", "text": ["a"]}])
def test_a_content_part_that_is_not_text_is_a_400(served, part):
    running, _ = served
    messages = messages_for(faults.make_items(1)[0])
    messages[1]["content"] = [part]
    reply = post(running, model="widgets", messages=messages)
    assert (reply.status_code, reply.json()["error"]["code"]) == (400, "invalid_messages")


def test_with_a_key_the_api_description_is_closed(served):
    running, _ = served
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert httpx.get(running.base_url.removesuffix("/v1") + path).status_code == 401
    with server.start(faults.widget_price) as open_server:
        assert httpx.get(open_server.base_url.removesuffix("/v1") + "/docs").status_code == 200


def test_uploads_stay_in_the_data_folder_until_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("PRICER_DATA_DIR", str(tmp_path / "data"))
    running = server.start(faults.widget_price, trainer=lambda items: faults.widget_price)
    client = openai.OpenAI(base_url=running.base_url, api_key="none", max_retries=0)
    file_id = client.files.create(file=("train.jsonl", b"{}\n" * 3), purpose="fine-tune").id
    (stored,) = (tmp_path / "data").rglob(file_id)
    assert stored.read_bytes() == b"{}\n" * 3
    running.stop()
    assert not stored.exists()


def test_stops_and_frees_its_port():
    running = server.start(faults.widget_price)
    assert httpx.get(f"{running.base_url}/models").status_code == 200
    running.stop()
    assert not running.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{running.base_url}/models")


def test_starts_from_one_command():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "PRICER_SERVER_API_KEY": "from-the-environment"}  # not on the command line
    command = [sys.executable, str(ROOT / "server.py"), "--predictor", "faults:widget_price",
               "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == \
            f"Serving widget_price at http://127.0.0.1:{port}/v1"
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
        pricer = frontier.compatible_pricer(f"http://127.0.0.1:{port}/v1", "widget_price",
                                            api_key="from-the-environment",
                                            cache=chat_api.Cache(":memory:"))
        item = faults.make_items(1, start=8)[0]
        assert pricer(item) == faults.widget_price(item)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_bad_predictor_spec_is_a_clear_error():
    with pytest.raises(SystemExit, match="module:name"):
        server.load_predictor("faults.widget_price")
    with pytest.raises(SystemExit, match="not a callable"):
        server.load_predictor("faults:ROOT_MISSING")


def test_another_predictor_under_the_same_name_is_never_answered_from_the_cache(tmp_path):
    cache, item = tmp_path / "replies.sqlite", faults.make_items(1, start=4)[0]
    first = server.start(faults.widget_price, model="widgets")
    port = int(first.base_url.rsplit(":", 1)[1].removesuffix("/v1"))
    assert frontier.compatible_pricer(first.base_url, "widgets",
                                      cache=chat_api.Cache(cache))(item) == 20.0
    first.stop()
    with server.start(lambda item: 99.0, model="widgets", port=port) as second:
        assert second.base_url == first.base_url
        again = frontier.compatible_pricer(second.base_url, "widgets",
                                           cache=chat_api.Cache(cache))
        assert again(item) == 99.0 and again.meter.calls == 1
        reply = httpx.get(f"{second.base_url}/models/widgets")
        assert reply.json()["fingerprint"] == again.chat.identity()["served"]
        assert httpx.get(f"{second.base_url}/models/nope").status_code == 404


def raw_request(running, head: str, body: bytes = b"") -> bytes:
    """Send bytes as they are (no client tidies them up); the first line of the answer."""
    host, port = running.base_url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        return sock.recv(65536).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("headers, status", [
    ({b"content-length": b"10", b"transfer-encoding": b"chunked"}, 411),
    ({b"transfer-encoding": b"chunked"}, 411),
    ({b"content-length": b"+5"}, 400),
    ({b"content-length": b"%d" % (server.MAX_BODY + 1)}, 413),
])
def test_a_declared_length_cannot_smuggle_a_chunked_body(headers, status):
    """Content-Length: 10 with Transfer-Encoding: chunked is refused before the app runs:
    an HTTP parser that reads the chunks (uvicorn's h11) would read past the body limit.
    Checked at the ASGI level, as parsers differ in what they let through."""
    sent = []

    async def app(scope, receive, send):
        sent.append("the app ran")

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": "/v1/chat/completions", "headers": list(headers.items())}
    asyncio.run(server.BodyLimit(app)(scope, None, send))
    assert sent[0]["status"] == status and "the app ran" not in sent


@pytest.mark.parametrize("path", ["/chat/completions", "/files", "/fine_tuning/jobs"])
def test_the_key_is_checked_before_the_body_is_read(served, path):
    """Without the key, a 401 comes back at once, though the 8 MB body it declares has not
    been sent: nothing was read, parsed or stored."""
    running, _ = served
    answer = raw_request(running, f"POST /v1{path} HTTP/1.1\nHost: x\nAuthorization: Bearer "
                                  f"wrong\nContent-Length: {8 << 20}\n")
    assert answer.split()[1] == b"401"


def test_bad_json_without_the_key_is_a_401_not_a_422(served):
    running, _ = served
    reply = httpx.post(f"{running.base_url}/chat/completions", content=b"{", timeout=10,
                       headers={"x-api-key": "wrong", "Content-Type": "application/json"})
    assert (reply.status_code, reply.json()["error"]["code"]) == (401, "invalid_api_key")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT],
                         ids=["kill -9", "SIGTERM", "SIGINT"])
def test_a_killed_servers_uploads_go_at_the_next_start(tmp_path, monkeypatch, how):
    """A server process killed before it stopped leaves its uploads; the next server to
    start removes them (and leaves those of servers still running)."""
    env = {**os.environ, "PRICER_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    # a runner started in the background ignores SIGINT, and so would the child: not here
    script = ("import signal, time, server\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "r = server.start(lambda i: 1.0, trainer=lambda items: (lambda i: 1.0))\n"
              "print(r.base_url, flush=True)\n"
              "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    base_url = child.stdout.readline().decode().strip()
    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)
    client.files.create(file=("train.jsonl", b"{}\n" * 3), purpose="fine-tune")
    os.kill(child.pid, how)
    child.wait(timeout=30)
    (left,) = (tmp_path / "server-files").iterdir()
    assert any(left.iterdir())
    monkeypatch.setenv("PRICER_DATA_DIR", str(tmp_path))
    with server.start(faults.widget_price, trainer=lambda items: faults.widget_price):
        folders = list((tmp_path / "server-files").iterdir())
        assert left not in folders and len(folders) == 1
        with server.start(faults.widget_price, trainer=lambda items: faults.widget_price):
            assert len(list((tmp_path / "server-files").iterdir())) == 2  # both alive


@pytest.fixture(scope="module")
def keyless(tmp_path_factory):
    """A server without a key, taking files: what a web page could reach on localhost."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRICER_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        with server.start(faults.widget_price, trainer=lambda items: faults.widget_price) as r:
            yield r


def port_of(running) -> int:
    return int(running.base_url.rsplit(":", 1)[1].removesuffix("/v1"))


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost:3000", "null",
                                    "http://127.0.0.1", "http://[::1", "http://127.0.0.1:%d.x"])
def test_without_a_key_a_page_of_another_site_is_refused(keyless, origin):
    chat = {"model": "pricer", "messages": frontier.messages_for(faults.make_items(1)[0])}
    headers = {"Origin": origin.replace("%d", str(port_of(keyless)))}
    reply = httpx.post(f"{keyless.base_url}/chat/completions", json=chat, headers=headers)
    assert (reply.status_code, reply.json()["error"]["code"]) == (403, "cross_origin")
    upload = httpx.post(f"{keyless.base_url}/files", headers=headers, data={"purpose": "x"},
                        files={"file": ("train.jsonl", b"{}\n")})
    assert upload.status_code == 403
    assert httpx.get(f"{keyless.base_url}/files").json()["data"] == []  # nothing stored


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_without_a_key_the_servers_own_pages_are_answered(keyless, host):
    origin = f"http://{host}:{port_of(keyless)}"  # its /docs page, say
    chat = {"model": "pricer", "messages": frontier.messages_for(faults.make_items(1)[0])}
    reply = httpx.post(f"{keyless.base_url}/chat/completions", json=chat,
                       headers={"Origin": origin})
    assert reply.status_code == 200


def test_without_a_key_a_domain_that_resolves_here_is_refused(keyless):
    """DNS rebinding: a page's own domain made to resolve to 127.0.0.1, so that the browser
    takes the server for the page's own site and sends no cross-site Origin."""
    port = port_of(keyless)
    reply = httpx.get(f"{keyless.base_url}/files", headers={"Host": f"evil.example:{port}"})
    assert (reply.status_code, reply.json()["error"]["code"]) == (403, "host_not_allowed")
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert httpx.get(f"{keyless.base_url}/files", headers={"Host": host}).status_code == 200


def test_a_cross_site_request_is_refused_before_its_body_is_read(keyless):
    answer = raw_request(keyless, f"POST /v1/files HTTP/1.1\nHost: 127.0.0.1\nOrigin: "
                                  f"https://evil.example\nContent-Length: {8 << 20}\n")
    assert answer.split()[1] == b"403"


def test_with_a_key_origins_are_the_keys_business(served):
    running, _ = served
    chat = {"model": "widgets", "messages": frontier.messages_for(faults.make_items(1)[0])}
    headers = {"Authorization": "Bearer key", "Origin": "https://elsewhere.example",
               "Host": "pricer.example"}
    reply = httpx.post(f"{running.base_url}/chat/completions", json=chat, headers=headers)
    assert reply.status_code == 200


def test_uploads_are_capped_in_all(keyless, monkeypatch):
    monkeypatch.setenv("PRICER_SERVER_UPLOADS_MB", "1")  # read when used
    client = openai.OpenAI(base_url=keyless.base_url, api_key="none", max_retries=0)
    first = client.files.create(file=("a.jsonl", b"x" * 600_000), purpose="fine-tune")
    with pytest.raises(openai.APIStatusError, match="PRICER_SERVER_UPLOADS_MB") as over:
        client.files.create(file=("b.jsonl", b"x" * 600_000), purpose="fine-tune")
    assert over.value.status_code == 413
    assert [f.id for f in client.files.list().data] == [first.id]
    assert client.files.delete(first.id).deleted
    second = client.files.create(file=("b.jsonl", b"x" * 600_000), purpose="fine-tune")
    assert [f.id for f in client.files.list().data] == [second.id]
    client.files.delete(second.id)
