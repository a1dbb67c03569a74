"""NVIDIA Jetson boards: K3S agents that run inference and functions."""

device_profile = "jetson"
mgmt_interface = "eth0"
sonic_config_db = False
# Parsec holds the node's own key for edge-node certification.
parsec_service = True
