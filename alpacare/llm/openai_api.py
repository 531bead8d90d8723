"""The OpenAI provider: the OpenAI API, or any OpenAI-compatible server (vLLM, llama.cpp)."""

from __future__ import annotations

import openai
from openai.types import Completion
from openai.types.chat import ChatCompletion

from .api import MALFORMED_REPLY, APIProvider
from .base import LLMError, Request, Response


class OpenAIProvider(APIProvider):
    name = "openai"
    default_key_env = "OPENAI_API_KEY"
    default_host = "api.openai.com"

    def make_client(self, key: str):
        # max_retries=0: retries (and their backoff) belong to our client layer
        return openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.sdk_timeout(openai))

    def complete_one(self, request: Request) -> Response:
        if request.fields or request.choices:
            raise LLMError("constrained fields and choice scoring are not supported by the openai provider (use local)")
        client = self.client()
        params = dict(
            model=request.model,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            presence_penalty=request.presence_penalty,
        )
        if request.stop:
            params["stop"] = list(request.stop)
        if request.seed is not None:
            params["seed"] = request.seed
        if request.top_k is not None:  # not in OpenAI's API; OpenAI-compatible servers (vLLM) take it in the body
            params["top_k"] = request.top_k
        # client.post rather than .create: .create runs the SDK's recursive TypedDict transform on
        # every call, a third of our client CPU per call, and our plain str/number params need none
        try:
            if request.messages is not None:
                messages = [{"role": role, "content": content} for role, content in request.messages]
                reply = client.post("/chat/completions", body={"messages": messages, **params}, cast_to=ChatCompletion)
                choice = reply.choices[0]
                text = choice.message.content or ""
            else:
                reply = client.post("/completions", body={"prompt": request.prompt, **params}, cast_to=Completion)
                choice = reply.choices[0]
                text = choice.text
            if choice.finish_reason == "content_filter":  # a 200, nothing to keep
                raise self.filtered("finish_reason content_filter")
            if not isinstance(text, str):
                raise TypeError(f"the reply's text is {type(text).__name__}")
            usage = reply.usage
            return Response(
                text=text,
                finish_reason="length" if choice.finish_reason == "length" else "stop",
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
                model=reply.model,
                extra={"finish_reason": choice.finish_reason},
            )
        except openai.APIStatusError as err:
            # the SDK hands us the `error` object of the reply, or its raw text
            detail = err.body.get("message") if isinstance(err.body, dict) else err.body
            code = (err.body.get("code") or err.body.get("type")) if isinstance(err.body, dict) else None
            raise self.status_error(err.status_code, detail or err.message, err.response.headers, code) from err
        except openai.APIConnectionError as err:  # includes APITimeoutError, resets, truncated bodies
            raise self.connection_error(err) from err
        except openai.APIError as err:  # e.g. a reply the SDK's models reject
            raise self.malformed_error(err) from err
        except MALFORMED_REPLY as err:  # a 200 whose body is not JSON or not a reply
            raise self.malformed_error(err) from err
