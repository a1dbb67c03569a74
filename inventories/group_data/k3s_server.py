"""The K3S server (one SONiC switch)."""

k3s_role = "server"
