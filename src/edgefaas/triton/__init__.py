"""Triton Inference Server (SoW Task 4): calling it, choosing which device's server runs a
request, and the Task 4.3 test cases that run as K3S Jobs.

The server itself is NVIDIA's tritonserver, installed by deploys/triton.py with the model
repository of templates/triton/models.
"""

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002
FACE_MODEL = "face_expression"
# The cloud's larger expression model (joint inference, edgefaas.triton.joint).
LARGE_FACE_MODEL = "face_expression_large"
NUMERIC_MODEL = "add_sub"
