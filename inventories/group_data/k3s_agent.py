"""K3S agents (the other switches and the Jetson boards)."""

k3s_role = "agent"
