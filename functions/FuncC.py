"""FuncC: the end of the chain FuncA -> FuncB -> FuncC.

Answers where it ran (host or pod name) and what it was given, so a caller of FuncA can
see every hop of the chain, and on which device each ran.
"""

INPUT_SCHEMA = {
    "type": "object",
    "properties": {"message": {"type": "string", "description": "passed down the chain"}},
}
OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["function", "host", "call_id"],
    "properties": {
        "function": {"const": "FuncC"},
        "host": {"type": "string"},
        "call_id": {"type": "string"},
        "message": {"type": "string"},
    },
}


def handle(event, context):
    data = event.json(default={}) or {}
    message = data.get("message", "") if isinstance(data, dict) else ""
    return {
        "function": "FuncC",
        "host": context.hostname,
        "call_id": context.call_id,
        "message": str(message),
    }
