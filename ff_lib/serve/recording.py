"""Each request served is a conversation in the workspace, like the app's: the request's messages,
then the reply, stored as it streams (ff_lib.chat's ReplyRecorder) with its provenance.

Marked as the API's (conversations.source = 'api'); a reply cut off by a client that went away
ends 'interrupted' with the text said so far. Every write opens and closes the workspace file.
"""

from ff_lib.chat import ReplyRecorder, title_from, turn_meta
from ff_lib.serve.catalog import ServedModel
from ff_lib.serve.parsing import ChatCall


def request_meta(call: ChatCall, model: ServedModel, request_id: str) -> dict:
    """What the API block of a stored reply says about the request."""
    return {
        "request_id": request_id,
        "model": model.id,
        "stream": call.stream,
        "stop": list(call.stops),
        "logprobs": call.logprobs,
    }


def start_recording(ws, call: ChatCall, model: ServedModel, request_id: str) -> ReplyRecorder:
    """Store the request's messages in a new API conversation with its reply opened
    ('streaming'), in one transaction; the recorder that writes the reply as it grows."""
    run_meta = {} if model.run_id is None else {"run": {"id": model.run_id, "name": model.run_name}}
    meta = turn_meta(run_meta, model.base_model, model.adapter_dir, call.settings.as_dict())
    meta["api"] = request_meta(call, model, request_id)
    reply = ws.start_conversation(
        title=title_from(call.messages[-1]["content"]),
        run_id=model.run_id,
        source="api",
        messages=tuple(
            (m["role"], m["content"], run_meta if m["role"] == "user" else {})
            for m in call.messages
        ),
        reply_meta=meta,
    )
    return ReplyRecorder(ws, reply.conversation_id, meta=meta, stored=reply)
