"""The K3S server (one SONiC switch)."""

k3s_role = "server"
# The EdgeFaaS gateway runs here (deploys/edgefaas.py): its web stack and the kubernetes client.
edgefaas_extras = ["gateway", "vision", "nodeauth"]
