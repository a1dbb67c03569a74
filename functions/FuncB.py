"""FuncB: the middle of the chain; calls FuncC through the gateway and wraps its answer.

The call to FuncC goes through the gateway (never straight to FuncC's pod), so it is
routed to wherever FuncC runs, billed to the same license as the call that reached
FuncB, and traced with FuncB's call id as its parent.
"""

INPUT_SCHEMA = {
    "type": "object",
    "properties": {"message": {"type": "string", "description": "passed down the chain"}},
}
OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["function", "host", "call_id", "FuncC"],
    "properties": {
        "function": {"const": "FuncB"},
        "host": {"type": "string"},
        "call_id": {"type": "string"},
        "FuncC": {"type": "object"},
    },
}


def handle(event, context):
    data = event.json(default={}) or {}
    message = data.get("message", "") if isinstance(data, dict) else ""
    below = context.call("FuncC", json={"message": str(message)}).json()
    return {"function": "FuncB", "host": context.hostname, "call_id": context.call_id, "FuncC": below}
