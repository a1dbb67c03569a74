"""FuncA: the head of the chain FuncA -> FuncB -> FuncC (SoW Task 3.3).

Calls FuncB through the gateway; FuncB calls FuncC. The answer nests each hop's part,
with the host (pod) each ran on, so placing FuncA and FuncB on different devices shows
in the answer itself.
"""

INPUT_SCHEMA = {
    "type": "object",
    "properties": {"message": {"type": "string", "description": "passed down the chain"}},
}
OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["function", "host", "call_id", "FuncB"],
    "properties": {
        "function": {"const": "FuncA"},
        "host": {"type": "string"},
        "call_id": {"type": "string"},
        "FuncB": {"type": "object"},
    },
}


def handle(event, context):
    data = event.json(default={}) or {}
    message = data.get("message", "") if isinstance(data, dict) else ""
    below = context.call("FuncB", json={"message": str(message)}).json()
    return {"function": "FuncA", "host": context.hostname, "call_id": context.call_id, "FuncB": below}
