"""JSON Schemas of the gateway's bodies: enforced by validation.py, published by openapi.py.

Routes anchored on OpenFaaS keep its camelCase fields (service, envVars, availableReplicas);
EdgeFaaS's own routes (licenses, plans, billing, apis, nodes) use snake_case, as the
billing format in the design does.
"""

from __future__ import annotations

from typing import Any

from edgefaas.backends.base import FUNCTION_NAME_PATTERN, SECRET_NAME_MAX, SECRET_NAME_PATTERN

Schema = dict[str, Any]

FUNCTION_NAME: Schema = {"type": "string", "pattern": FUNCTION_NAME_PATTERN, "maxLength": 63}
PLAN_NAME: Schema = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}
LICENSE_ID: Schema = {"type": "string", "pattern": "^(lic_[0-9a-f]{16}|public)$"}
MAX_REPLICAS = 64

_STRING_MAP: Schema = {
    "type": "object",
    "nullable": True,  # faas-cli sends a Go map it never filled as null
    "additionalProperties": {"type": "string", "maxLength": 4096},
    "maxProperties": 256,
}
SECRET_NAME: Schema = {"type": "string", "pattern": SECRET_NAME_PATTERN, "maxLength": SECRET_NAME_MAX}
NAMESPACE: Schema = {"type": "string", "maxLength": 63}

_RESOURCES: Schema = {
    "type": "object",
    "nullable": True,
    "additionalProperties": False,
    "properties": {
        "memory": {
            "type": "string",
            "pattern": r"^[0-9]+(\.[0-9]+)?([KMGT]i?|[kmMGT])?$",
            "example": "128Mi",
        },
        "cpu": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?m?$", "example": "500m"},
    },
}
ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "line": {"type": "integer", "description": "for code that does not compile: the line at fault"},
    },
}

FUNCTION_DEPLOYMENT: Schema = {
    "type": "object",
    "required": ["service"],
    "additionalProperties": False,
    "oneOf": [{"required": ["code"]}, {"required": ["image"]}],
    "x-oneOf-message": "give exactly one of code (Python source) or image",
    "properties": {
        "service": FUNCTION_NAME,
        "code": {
            "type": "string",
            "minLength": 1,
            "description": "EdgeFaaS: Python source defining handle(event, context), run by the runtime",
        },
        "image": {"type": "string", "minLength": 1, "maxLength": 512},
        "namespace": {"type": "string", "maxLength": 63},
        "envProcess": {"type": "string", "maxLength": 1024},
        "envVars": _STRING_MAP,
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "constraints": {
            "type": "array",
            "maxItems": 32,
            "items": {"type": "string", "maxLength": 256, "pattern": "^ *[^= ]+ *==? *[^= ]+ *$"},
            "description": "node label rules key=value, e.g. edgefaas.io/profile=jetson",
        },
        "limits": _RESOURCES,
        "requests": _RESOURCES,
        "secrets": {"type": "array", "maxItems": 64, "items": SECRET_NAME},
        "readOnlyRootFilesystem": {"type": "boolean"},
        "public": {"type": "boolean", "description": "EdgeFaaS: callable without a license"},
        "replicas": {"type": "integer", "minimum": 0, "maximum": MAX_REPLICAS},
    },
}

FUNCTION_DELETE: Schema = {
    "type": "object",
    "required": ["functionName"],
    "additionalProperties": False,
    "properties": {"functionName": FUNCTION_NAME, "namespace": {"type": "string", "maxLength": 63}},
}

SCALE_REQUEST: Schema = {
    "type": "object",
    "required": ["replicas"],
    "additionalProperties": False,
    "properties": {
        "serviceName": FUNCTION_NAME,
        "namespace": {"type": "string", "maxLength": 63},
        "replicas": {"type": "integer", "minimum": 0, "maximum": MAX_REPLICAS},
    },
}

FUNCTION_STATUS: Schema = {
    "type": "object",
    "required": [
        "name",
        "replicas",
        "availableReplicas",
        "invocationCount",
        "createdAt",
        "public",
        "version",
    ],
    "properties": {
        "name": {"type": "string"},
        "image": {"type": "string", "nullable": True},
        "namespace": {"type": "string"},
        "envProcess": {"type": "string", "nullable": True},
        "envVars": {"type": "object", "additionalProperties": {"type": "string"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "constraints": {"type": "array", "items": {"type": "string"}},
        "limits": {"type": "object", "additionalProperties": {"type": "string"}},
        "requests": {"type": "object", "additionalProperties": {"type": "string"}},
        "secrets": {"type": "array", "items": {"type": "string"}},
        "readOnlyRootFilesystem": {"type": "boolean"},
        "public": {"type": "boolean"},
        "codeSha256": {"type": "string", "nullable": True},
        "invocationCount": {"type": "integer"},
        "replicas": {"type": "integer"},
        "availableReplicas": {"type": "integer"},
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
        "version": {"type": "integer"},
        "nodes": {"type": "array", "items": {"type": "string"}},
        "restarts": {"type": "integer"},
        "description": {"type": "string"},
    },
}

SYSTEM_INFO: Schema = {
    "type": "object",
    "required": ["provider", "version", "arch"],
    "properties": {
        "provider": {
            "type": "object",
            "properties": {
                "provider": {"type": "string"},
                "orchestration": {"type": "string"},
                "version": {
                    "type": "object",
                    "properties": {"sha": {"type": "string"}, "release": {"type": "string"}},
                },
            },
        },
        "version": {
            "type": "object",
            "properties": {"sha": {"type": "string"}, "release": {"type": "string"}},
        },
        "arch": {"type": "string"},
        "async_queue": {
            "type": "object",
            "description": "where async calls wait (memory or nats) and how many wait and run now "
            "(null when the queue cannot be asked)",
            "properties": {
                "kind": {"type": "string"},
                "waiting": {"type": "integer", "nullable": True},
                "running": {"type": "integer", "nullable": True},
            },
        },
    },
}

API_ENTRY: Schema = {
    "type": "object",
    "required": ["name", "route", "async_route", "public", "description", "input_schema", "output_schema"],
    "properties": {
        "name": {"type": "string"},
        "route": {"type": "string"},
        "async_route": {"type": "string"},
        "public": {"type": "boolean"},
        "description": {"type": "string"},
        "input_schema": {"type": "object", "nullable": True},
        "output_schema": {"type": "object", "nullable": True},
        # Where a WAN client reaches the function (edgefaas.gateway.service_addresses); absent without WAN.
        "wan": {
            "type": "object",
            "nullable": True,
            "properties": {
                "address": {"type": "string"},
                "url": {"type": "string"},
                "community": {"type": "string", "nullable": True},
                "anycast": {"type": "string"},
            },
        },
    },
}

WAN_STATE: Schema = {
    "type": "object",
    "required": ["anycast", "functions"],
    "properties": {
        "anycast": {"type": "string", "nullable": True},
        "functions": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "address": {"type": "string"},
                    "available": {"type": "boolean"},
                    "version": {"type": "integer", "nullable": True},
                    "community": {"type": "string", "nullable": True},
                },
            },
        },
    },
}

NODE: Schema = {
    "type": "object",
    "required": ["name", "profile", "arch", "ready", "cpu", "memory", "gpus", "functions"],
    "properties": {
        "name": {"type": "string"},
        "profile": {"type": "string"},
        "arch": {"type": "string"},
        "os": {"type": "string"},
        "ready": {"type": "boolean"},
        "cpu": {"type": "object"},
        "memory": {
            "type": "object",
            "properties": {"total_bytes": {"type": "integer"}, "available_bytes": {"type": "integer"}},
        },
        "gpus": {"type": "array", "items": {"type": "object"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "functions": {"type": "array", "items": {"type": "string"}},
        "role": {"type": "string", "description": "K3S role: server or agent ('' where unknown)"},
        "certification": {
            "type": "object",
            "nullable": True,
            "description": "edge-node certification (deploys/nodeauth.py); null where not applicable",
            "required": ["state"],
            "properties": {
                "state": {"type": "string", "enum": ["certified", "pending", "authority"]},
                "reason": {"type": "string", "nullable": True},
                "at": {"type": "string", "nullable": True},
                "serial": {"type": "string", "nullable": True},
                "clock_skew_s": {
                    "type": "number",
                    "description": "the node's clock minus the K3S server's, in seconds; present only "
                    "while beyond the authentication server's tolerance (the node stays certified)",
                },
            },
        },
    },
}

NODE_REMOVAL: Schema = {
    "type": "object",
    "required": ["node", "reason", "at"],
    "properties": {
        "node": {"type": "string"},
        "reason": {"type": "string"},
        "at": {"type": "string", "nullable": True},
    },
}

_QUOTA: Schema = {
    "type": "object",
    "nullable": True,
    "required": ["calls", "period_s"],
    "additionalProperties": False,
    "properties": {
        "calls": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000_000},
        "period_s": {"type": "integer", "minimum": 1, "maximum": 31_622_400},
    },
}
PLAN_REQUEST: Schema = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": PLAN_NAME,
        "description": {"type": "string", "maxLength": 500},
        "price_per_call": {"type": "number", "minimum": 0, "maximum": 1_000_000},
        "price_per_second": {"type": "number", "minimum": 0, "maximum": 1_000_000},
        "quota": _QUOTA,
    },
}
PLAN: Schema = {
    "type": "object",
    "required": ["name", "description", "price_per_call", "price_per_second", "quota"],
    "properties": PLAN_REQUEST["properties"],
}

LICENSE_REQUEST: Schema = {
    "type": "object",
    "required": ["name", "plan"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200}, "plan": PLAN_NAME},
}
LICENSE: Schema = {
    "type": "object",
    "required": ["id", "name", "plan", "created_at", "revoked"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "plan": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "revoked": {"type": "boolean"},
    },
}
LICENSE_ISSUED: Schema = {
    "type": "object",
    "required": [*LICENSE["required"], "token"],
    "properties": {
        **LICENSE["properties"],
        "token": {"type": "string", "description": "send as Authorization: Bearer <token>; shown only once"},
    },
}

SECRET: Schema = {
    "type": "object",
    "description": "OpenFaaS's Secret: value as text, or rawValue as base64 (Go's []byte in JSON)",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": SECRET_NAME,
        "namespace": NAMESPACE,
        "value": {"type": "string"},
        "rawValue": {"type": "string", "contentEncoding": "base64"},
    },
}

SECRET_ENTRY: Schema = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
}

FUNCTION_NAMESPACE: Schema = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

# Alertmanager's webhook body, as OpenFaaS's gateway reads it (status and function_name per alert);
# Alertmanager's other fields (version, groupKey, startsAt...) are allowed and not read.
ALERT: Schema = {
    "type": "object",
    "required": ["alerts"],
    "properties": {
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "receiver": {"type": "string"},
        "alerts": {
            "type": "array",
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["status", "labels"],
                "properties": {
                    "status": {"type": "string", "enum": ["firing", "resolved"]},
                    "labels": {
                        "type": "object",
                        "required": ["function_name"],
                        "properties": {
                            "alertname": {"type": "string"},
                            "function_name": {"type": "string", "minLength": 1, "maxLength": 127},
                        },
                    },
                },
            },
        },
    },
}
