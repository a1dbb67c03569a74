"""system_info: the device this function runs on (Demo 2): name, profile, CPU, memory, GPU.

Deploy it with a constraint (edgefaas.io/profile=jetson) to ask a given kind of device.
"""

from edgefaas.runtime.hostinfo import describe_host

INPUT_SCHEMA = {"type": "object", "description": "no input; any body is ignored"}
OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["name", "profile", "arch", "cpu", "memory", "gpus"],
    "properties": {
        "name": {"type": "string"},
        "profile": {"type": "string", "description": "sonic, jetson or generic"},
        "arch": {"type": "string"},
        "os": {"type": "string"},
        "cpu": {"type": "object"},
        "memory": {"type": "object"},
        "gpus": {"type": "array"},
    },
}


def handle(event, context):
    return describe_host()
