"""The API providers, run with the real openai/anthropic clients against a fake server."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest

from alpacare.llm.anthropic_api import AnthropicProvider
from alpacare.llm.base import LLMError, Request, RetryableError
from alpacare.llm.openai_api import OpenAIProvider
from fakeapi import FakeAPI, api_key

OPENAI_KEY = "sk-test-fake-0123456789abcdef"  # not a real key
ANTHROPIC_KEY = "sk-ant-test-fake-9876543210"  # not a real key


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No key, base URL, extra header or proxy from the developer's shell may leak in."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "ANTHROPIC_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def api():
    with FakeAPI() as server:
        yield server


def make(kind: str, api: FakeAPI, monkeypatch, **kw):
    """A provider of `kind` aimed at the fake server, with a fake key in its default env var."""
    if kind == "openai":
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        return OpenAIProvider(base_url=api.openai_url, timeout=2.0, **kw)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    return AnthropicProvider(base_url=api.url, timeout=2.0, **kw)


# --- OpenAI ------------------------------------------------------------------------------


def test_openai_chat_round_trip(api, monkeypatch):
    provider = make("openai", api, monkeypatch)
    request = Request.chat("gpt-test", "what is asthma ?", system="You are a nurse.", max_tokens=50,
                           temperature=0.7, top_p=0.9, presence_penalty=0.5, stop=("STOP",), seed=42)
    response = provider.complete_one(request)

    assert response.text == "echo: what is asthma ?"
    assert response.finish_reason == "stop"
    assert (response.input_tokens, response.output_tokens) == (8, 5)  # fakeapi counts words: 4 + 4 in, 5 out
    [sent] = api.requests
    assert sent["path"] == "/v1/chat/completions"
    assert api_key(sent["headers"]) == OPENAI_KEY
    assert sent["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    body = sent["body"]
    assert body["model"] == "gpt-test"
    assert body["messages"] == [{"role": "system", "content": "You are a nurse."},
                                {"role": "user", "content": "what is asthma ?"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (50, 0.7, 0.9)
    assert (body["presence_penalty"], body["stop"], body["seed"]) == (0.5, ["STOP"], 42)
    assert not body.get("stream")


def test_openai_omits_unset_stop_and_seed(api, monkeypatch):
    provider = make("openai", api, monkeypatch)
    provider.complete_one(Request.chat("gpt-test", "hi"))
    body = api.requests[0]["body"]
    assert "stop" not in body and "seed" not in body
    assert (body["temperature"], body["top_p"], body["presence_penalty"], body["max_tokens"]) == (0.0, 1.0, 0.0, 256)
    assert body["messages"] == [{"role": "user", "content": "hi"}]


def test_openai_length_and_stop_sequence(api, monkeypatch):
    provider = make("openai", api, monkeypatch)
    cut = provider.complete_one(Request.chat("gpt-test", "one two three", max_tokens=2))
    assert (cut.text, cut.finish_reason, cut.output_tokens) == ("echo: one", "length", 2)
    stopped = provider.complete_one(Request.chat("gpt-test", "a b END c", stop=("zz", "END")))
    assert (stopped.text, stopped.finish_reason) == ("echo: a b ", "stop")
    assert api.requests[1]["body"]["stop"] == ["zz", "END"]


def test_openai_completion_round_trip(api, monkeypatch):
    provider = make("openai", api, monkeypatch)
    request = Request(model="base-test", prompt="Question: fever ?\nAnswer:", max_tokens=3,
                      temperature=0.2, top_p=0.5, presence_penalty=0.1, seed=7, stop=("\n\n",))
    response = provider.complete_one(request)

    assert (response.text, response.finish_reason) == ("echo: Question: fever", "length")
    assert (response.input_tokens, response.output_tokens) == (4, 3)
    [sent] = api.requests
    assert sent["path"] == "/v1/completions"
    body = sent["body"]
    assert "messages" not in body
    assert body["prompt"] == "Question: fever ?\nAnswer:"
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"]) == ("base-test", 3, 0.2, 0.5)
    assert (body["presence_penalty"], body["seed"], body["stop"]) == (0.1, 7, ["\n\n"])


def test_openai_key_is_read_at_the_first_call(api, monkeypatch):
    provider = OpenAIProvider(api_key_env="ALPACARE_TEST_KEY", base_url=api.openai_url, timeout=2.0)
    monkeypatch.setenv("ALPACARE_TEST_KEY", OPENAI_KEY)  # set after construction
    provider.complete_one(Request.chat("gpt-test", "hi"))
    assert api.requests[0]["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    assert provider.identity() == {"base_url": api.openai_url}


def test_keyless_server_needs_no_key_but_only_when_asked(api):
    with pytest.raises(LLMError, match="OPENAI_API_KEY .*keyless: true"):
        OpenAIProvider(base_url=api.openai_url, timeout=2.0).complete_one(Request.chat("local-test", "hi"))
    assert api.requests == []
    provider = OpenAIProvider(base_url=api.openai_url, timeout=2.0, keyless=True)
    assert provider.complete_one(Request.chat("local-test", "hi")).text == "echo: hi"
    assert api.requests[0]["headers"]["authorization"] == "Bearer EMPTY"


# --- Anthropic ---------------------------------------------------------------------------


def test_anthropic_messages_round_trip(api, monkeypatch):
    provider = make("anthropic", api, monkeypatch)
    request = Request(model="claude-test", max_tokens=40, temperature=0.3, top_p=0.8, presence_penalty=0.5,
                      seed=3, stop=("STOP",), messages=(("system", "Be brief."), ("user", "first"),
                                                        ("assistant", "ok"), ("system", "Be kind."),
                                                        ("user", "why STOP now")))
    response = provider.complete_one(request)

    assert (response.text, response.finish_reason) == ("echo: why ", "stop")
    assert (response.input_tokens, response.output_tokens) == (9, 2)
    [sent] = api.requests
    assert sent["path"] == "/v1/messages"
    assert api_key(sent["headers"]) == ANTHROPIC_KEY
    assert sent["headers"].get("anthropic-version")
    body = sent["body"]
    assert body["system"] == "Be brief.\n\nBe kind."
    assert body["messages"] == [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                                {"role": "user", "content": "why STOP now"}]
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"]) == ("claude-test", 40, 0.3, 0.8)
    assert body["stop_sequences"] == ["STOP"]
    assert "presence_penalty" not in body and "seed" not in body and not body.get("stream")


def test_anthropic_omits_default_top_p_system_and_stop(api, monkeypatch):
    provider = make("anthropic", api, monkeypatch)
    response = provider.complete_one(Request.chat("claude-test", "one two three", max_tokens=2))
    assert (response.text, response.finish_reason, response.output_tokens) == ("echo: one", "length", 2)
    body = api.requests[0]["body"]
    assert body["temperature"] == 0.0
    for absent in ("top_p", "system", "stop_sequences", "presence_penalty", "seed"):
        assert absent not in body, absent


def test_anthropic_prompt_is_one_user_message(api, monkeypatch):
    provider = make("anthropic", api, monkeypatch)
    response = provider.complete_one(Request(model="claude-test", prompt="Complete this"))
    assert (response.text, response.finish_reason, response.input_tokens) == ("echo: Complete this", "stop", 2)
    assert api.requests[0]["body"]["messages"] == [{"role": "user", "content": "Complete this"}]


def test_anthropic_server_without_key(api):
    provider = AnthropicProvider(base_url=api.url, timeout=2.0, keyless=True)
    assert provider.complete_one(Request.chat("claude-test", "hi")).text == "echo: hi"
    assert api_key(api.requests[0]["headers"]) == "EMPTY"
    assert provider.identity() == {"base_url": api.url}


# --- both: keys, errors ------------------------------------------------------------------

KINDS = ["openai", "anthropic"]
PROVIDERS = {"openai": (OpenAIProvider, "OPENAI_API_KEY"), "anthropic": (AnthropicProvider, "ANTHROPIC_API_KEY")}


@pytest.mark.parametrize("kind", KINDS)
def test_missing_key_names_the_variable(kind, monkeypatch):
    cls, default_env = PROVIDERS[kind]
    monkeypatch.setenv(default_env, "sk-should-not-appear")  # set, but not the one asked for
    provider = cls(api_key_env="ALPACARE_MISSING_KEY")  # constructing needs no key
    with pytest.raises(LLMError) as info:
        provider.complete_one(Request.chat("m", "hi"))
    assert not isinstance(info.value, RetryableError)
    assert "ALPACARE_MISSING_KEY" in str(info.value)
    assert "sk-" not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status, headers, wait", [
    (429, {"retry-after": "7"}, 7.0),
    (429, {"retry-after-ms": "1500"}, 1.5),
    (429, {}, None),
    (500, {}, None),
    (503, {"retry-after": "2"}, 2.0),
    (529, {}, None),
    (408, {}, None),
])
def test_transient_errors_are_retryable(kind, status, headers, wait, api, monkeypatch):
    provider = make(kind, api, monkeypatch)
    api.fail(status, "try again later", headers=headers)
    with pytest.raises(RetryableError) as info:
        provider.complete_one(Request.chat("m", "hi"))
    assert info.value.retry_after == wait
    assert str(status) in str(info.value) and "try again later" in str(info.value)
    # the failure was one reply only: the next call goes through
    assert provider.complete_one(Request.chat("m", "hi")).text == "echo: hi"
    assert len(api.requests) == 2  # and the client itself did not retry


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_permanent_errors_are_not_retryable(kind, status, api, monkeypatch):
    provider = make(kind, api, monkeypatch)
    api.fail(status, "you did something wrong")
    with pytest.raises(LLMError) as info:
        provider.complete_one(Request.chat("m", "hi"))
    assert not isinstance(info.value, RetryableError)
    assert str(status) in str(info.value) and "you did something wrong" in str(info.value)
    assert len(api.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_error_messages_never_carry_the_key(kind, api, monkeypatch):
    provider = make(kind, api, monkeypatch)
    key = OPENAI_KEY if kind == "openai" else ANTHROPIC_KEY
    api.fail(401, f"Incorrect API key provided: {key}")
    with pytest.raises(LLMError) as info:
        provider.complete_one(Request.chat("m", "hi"))
    assert key not in str(info.value)
    assert "Incorrect API key provided: ***" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_is_retryable(kind, api, monkeypatch):
    provider = make(kind, api, monkeypatch)
    provider.timeout = 0.1  # read before the client is built, at the first call
    api.delay = 0.5
    with pytest.raises(RetryableError) as info:
        provider.complete_one(Request.chat("m", "hi"))
    assert info.value.retry_after is None


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused_is_retryable(kind, monkeypatch):
    with socket.socket() as s:  # a port that nothing listens on once this block ends
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cls, env = PROVIDERS[kind]
    monkeypatch.setenv(env, "sk-test-fake")
    url = f"http://127.0.0.1:{port}" + ("/v1" if kind == "openai" else "")
    with pytest.raises(RetryableError):
        cls(base_url=url, timeout=1.0).complete_one(Request.chat("m", "hi"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("extra", [{"fields": (("Answer", 5),)}, {"choices": ("yes", "no")}])
def test_fields_and_choices_are_not_supported(kind, extra, api, monkeypatch):
    provider = make(kind, api, monkeypatch)
    with pytest.raises(LLMError, match=f"not supported by the {kind} provider"):
        provider.complete_one(Request.chat("m", "hi", **extra))
    assert api.requests == []


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_calls_share_one_client(kind, api, monkeypatch):
    sdk, cls_name = (openai, "OpenAI") if kind == "openai" else (anthropic, "Anthropic")
    real, built = getattr(sdk, cls_name), []
    monkeypatch.setattr(sdk, cls_name, lambda **kw: built.append(kw) or real(**kw))
    provider = make(kind, api, monkeypatch)
    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(lambda i: provider.complete_one(Request.chat("m", f"q{i}")).text, range(16)))
    assert texts == [f"echo: q{i}" for i in range(16)]
    assert len(api.requests) == 16
    assert len(built) == 1 and built[0]["max_retries"] == 0


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_the_response_names_the_model_the_api_reported(kind, api, monkeypatch):
    provider = make(kind, api, monkeypatch)
    api.snapshots["alias"] = "alias-2024-05-13"
    response = provider.complete_one(Request.chat("alias", "hello", max_tokens=5))
    assert response.model == "alias-2024-05-13"   # what answered, not what was asked for
    assert api.requests[-1]["body"]["model"] == "alias"
