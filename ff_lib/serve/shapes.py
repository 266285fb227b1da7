"""OpenAI's response shapes (openai-python's types: ChatCompletion, ChatCompletionChunk,
ChatCompletionTokenLogprob, CompletionUsage) built from our Reply and its tokens."""

import json
import time
import uuid

OBJECT_COMPLETION = "chat.completion"
OBJECT_CHUNK = "chat.completion.chunk"


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(reply) -> dict:
    """CompletionUsage from the reply's figures."""
    prompt, completion = reply.stats.prompt_tokens, reply.stats.new_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _token_bytes(text: str) -> list[int]:
    return list(text.encode("utf-8", errors="replace"))


def token_logprobs(tokens, served_chars: int | None = None) -> list[dict]:
    """ChatCompletionTokenLogprob entries for the tokens that make up the served text.

    `tokens` are Reply.tokens ({"text", "logprob", "top": [[text, logprob], ...]}). When a stop
    string cut the reply, tokens past the `served_chars` characters served are left out (counted
    by each token's own text: a character split over tokens counts once per token).
    """
    out, seen = [], 0
    for token in tokens:
        if served_chars is not None and seen >= served_chars:
            break
        seen += len(token["text"])
        out.append(
            {
                "token": token["text"],
                "logprob": token["logprob"],
                "bytes": _token_bytes(token["text"]),
                "top_logprobs": [
                    {"token": text, "logprob": lp, "bytes": _token_bytes(text)}
                    for text, lp in token["top"]
                ],
            }
        )
    return out


def with_notice(body: dict, reply) -> dict:
    """`ff_notice` (an extra field clients ignore unless they look) when the prompt was fitted
    to the context: older turns dropped, the message cut, or the reply limited."""
    if reply is not None and reply.notice:
        body["ff_notice"] = reply.notice
    return body


def completion(cid: str, created: int, model: str, served) -> dict:
    """A ChatCompletion for a reply read to its end (`served`: a ServedReply)."""
    body = {
        "id": cid,
        "object": OBJECT_COMPLETION,
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": served.text, "refusal": None},
                "logprobs": _logprobs(served),
                "finish_reason": served.finish_reason,
            }
        ],
        "usage": usage(served.reply),
    }
    return with_notice(body, served.reply)


def _logprobs(served) -> dict | None:
    if served.logprobs is None:
        return None
    served_chars = len(served.text) if served.stop_hit else None
    return {"content": token_logprobs(served.reply.tokens, served_chars), "refusal": None}


def chunk(
    cid: str,
    created: int,
    model: str,
    delta: dict,
    finish_reason: str | None = None,
    logprobs: dict | None = None,
    include_usage: bool = False,
) -> dict:
    """A ChatCompletionChunk with one choice; `usage` is null on each when usage was asked."""
    body = {
        "id": cid,
        "object": OBJECT_CHUNK,
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        ],
    }
    if include_usage:
        body["usage"] = None
    return body


def final_chunk(cid: str, created: int, model: str, served, include_usage: bool) -> dict:
    """The chunk that ends the choice: its finish_reason and, when asked, every token's
    log-probabilities (the door gives them once the reply is over)."""
    body = chunk(cid, created, model, {}, served.finish_reason, _logprobs(served), include_usage)
    return with_notice(body, served.reply)


def usage_chunk(cid: str, created: int, model: str, reply) -> dict:
    """The last chunk when stream_options.include_usage: no choices, the usage."""
    return {
        "id": cid,
        "object": OBJECT_CHUNK,
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(reply),
    }


def sse(document: dict | str) -> str:
    """One server-sent event: `data: {...}` and a blank line."""
    data = document if isinstance(document, str) else json.dumps(document, ensure_ascii=False)
    return f"data: {data}\n\n"


DONE = sse("[DONE]")
