"""The Anthropic provider: the Messages API, or a server that speaks it."""

from __future__ import annotations

import anthropic

from .api import MALFORMED_REPLY, APIProvider
from .base import LLMError, Request, Response


class AnthropicProvider(APIProvider):
    name = "anthropic"
    default_key_env = "ANTHROPIC_API_KEY"
    default_host = "api.anthropic.com"

    def make_client(self, key: str):
        # max_retries=0: retries (and their backoff) belong to our client layer
        return anthropic.Anthropic(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.sdk_timeout(anthropic))

    def complete_one(self, request: Request) -> Response:
        if request.fields or request.choices:
            raise LLMError("constrained fields and choice scoring are not supported by the anthropic provider (use local)")
        client = self.client()
        if request.messages is not None:
            system = "\n\n".join(content for role, content in request.messages if role == "system")
            messages = [{"role": role, "content": content} for role, content in request.messages if role != "system"]
        else:  # a raw prompt: the Messages API has no completion endpoint, so send it as the user turn
            system, messages = "", [{"role": "user", "content": request.prompt}]
        params = dict(model=request.model, max_tokens=request.max_tokens, messages=messages)
        if system:
            params["system"] = system
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        # The SDK (2.x) no longer has typed temperature/top_p arguments, but the API takes
        # them, so they go in the body as they are. top_p only when it matters: newer models
        # reject temperature and top_p together. presence_penalty and seed have no Anthropic
        # equivalent and are ignored.
        sampling = {"temperature": request.temperature}
        if request.top_p != 1.0:
            sampling["top_p"] = request.top_p
        if request.top_k is not None:
            sampling["top_k"] = request.top_k
        try:
            reply = client.messages.create(**params, extra_body=sampling)
            if reply.stop_reason == "refusal":  # the streaming classifiers' refusal: a 200 withheld
                raise self.filtered("stop_reason refusal")
            text = "".join(block.text for block in reply.content if block.type == "text")
            truncated = reply.stop_reason in ("max_tokens", "model_context_window_exceeded")
            return Response(
                text=text,
                finish_reason="length" if truncated else "stop",
                input_tokens=reply.usage.input_tokens,
                output_tokens=reply.usage.output_tokens,
                model=reply.model,
                extra={"finish_reason": reply.stop_reason},
            )
        except anthropic.APIStatusError as err:
            detail = err.api_message or (err.body if isinstance(err.body, str) else None)
            error = err.body.get("error") if isinstance(err.body, dict) else None
            code = error.get("type") if isinstance(error, dict) else None
            raise self.status_error(err.status_code, detail or err.message, err.response.headers, code) from err
        except anthropic.APIConnectionError as err:  # includes APITimeoutError, resets, truncated bodies
            raise self.connection_error(err) from err
        except anthropic.APIError as err:  # e.g. a reply the SDK's models reject
            raise self.malformed_error(err) from err
        except MALFORMED_REPLY as err:  # a 200 whose body is not JSON or not a reply
            raise self.malformed_error(err) from err
