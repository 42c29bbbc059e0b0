"""The chat APIs' plumbing on its own: Retry-After, keys that never follow a foreign base URL,
and claims in the shared reply cache."""

import http.server
import json
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import faults
import pytest

import chat_api
import frontier
import server
from chat import messages_for
from chat_api import Cache


def test_retry_after_forms():
    def error(**headers):
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert chat_api.retry_after(error(**{"retry-after-ms": "250"})) == 0.25
    assert chat_api.retry_after(error(**{"retry-after": "3"})) == 3.0
    assert 25 < chat_api.retry_after(error(**{"retry-after": later})) <= 30
    assert chat_api.retry_after(error(**{"retry-after": "soon"})) is None
    assert chat_api.retry_after(ValueError()) is None


class Listener(http.server.ThreadingHTTPServer):
    """A foreign endpoint that records the headers of every request and answers any chat."""

    def __init__(self):
        self.headers: list[dict] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                listener.headers.append(dict(self.headers))
                self.rfile.read(int(self.headers.get("content-length", 0)))
                shape = server.message if self.path.endswith("/messages") else server.completion
                body = json.dumps(shape("m", "Price is $9.00", 10)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_no_key_from_the_environment_goes_to_a_foreign_endpoint(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "sk-ant-token-secret")
    listener = Listener()
    url = f"http://127.0.0.1:{listener.server_address[1]}"
    messages = messages_for(faults.make_items(1)[0])
    try:
        for chat in (chat_api.OpenAIChat("m", base_url=f"{url}/v1"),
                     chat_api.AnthropicChat("m", base_url=url)):
            assert chat.complete(messages).text.endswith("9.00")
        chat_api.AnthropicChat("m", base_url=url, api_key="mine").complete(messages)
    finally:
        listener.shutdown()
    sent = [" ".join(h.values()) for h in listener.headers]
    assert len(sent) == 3 and not any("secret" in s for s in sent)
    assert "mine" in sent[2]  # a key the caller passes goes where the caller says


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_no_key_follows_a_base_url_setting(monkeypatch, tmp_path, where):
    """OPENAI_BASE_URL / ANTHROPIC_BASE_URL (environment or .env) send the SDKs elsewhere:
    no key, organization or project from the environment goes there."""
    import fine_tuning

    monkeypatch.chdir(tmp_path)
    for name, value in {"OPENAI_API_KEY": "sk-openai-secret", "OPENAI_ORG_ID": "org-secret",
                        "OPENAI_PROJECT_ID": "proj-secret", "ANTHROPIC_API_KEY": "sk-ant-secret",
                        "ANTHROPIC_AUTH_TOKEN": "sk-ant-token-secret"}.items():
        monkeypatch.setenv(name, value)
    listener = Listener()
    url = f"http://127.0.0.1:{listener.server_address[1]}"
    urls = {"OPENAI_BASE_URL": f"{url}/v1", "ANTHROPIC_BASE_URL": url}
    if where == "environment":
        for name, value in urls.items():
            monkeypatch.setenv(name, value)
    else:
        for name in urls:
            monkeypatch.delenv(name, raising=False)
        (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in urls.items()))
    messages = messages_for(faults.make_items(1)[0])
    try:
        chats = [chat_api.OpenAIChat("m"), frontier.openai_pricer("m").chat,
                 fine_tuning.tuned_pricer("ft:m").chat, chat_api.AnthropicChat("m"),
                 frontier.anthropic_pricer("m").chat]
        for chat in chats:
            assert chat.endpoint.startswith(url)
            assert chat.complete(messages).text.endswith("9.00")
    finally:
        listener.shutdown()
    sent = [" ".join(h.values()) for h in listener.headers]
    assert len(sent) == 5 and not any("secret" in s for s in sent)


def test_the_providers_own_url_in_a_setting_gets_its_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-1")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    chat = chat_api.OpenAIChat("m")
    assert (chat.client.api_key, chat.client.organization) == ("sk-openai", "org-1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://api.openai.com/v1")  # not over TLS
    assert chat_api.OpenAIChat("m").client.api_key == "none"


def test_a_claim_of_a_dead_process_or_too_old_is_taken_over(tmp_path):
    path = tmp_path / "replies.sqlite"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    dead, live = Cache(path), Cache(path, claim_seconds=0.3)
    dead.owner = dead.owner.rsplit("/", 2)[0] + f"/{gone}/x"
    assert dead.claim("a") is None
    start = time.monotonic()
    assert live.claim("a") is None and time.monotonic() - start < 0.2  # at once
    assert Cache(path).claim("b") is None  # a live owner's
    start = time.monotonic()
    assert live.claim("b") is None and 0.3 <= time.monotonic() - start < 5  # waited it out
