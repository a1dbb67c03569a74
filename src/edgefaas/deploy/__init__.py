"""What the deploy files use on the machine running pyinfra; nothing here runs on a device.

artifacts and artifact_source (each artifact for a device's own architecture), facts (every
fact class), inventory (the inventory check before any host is touched), services, kube_account,
control_plane_acl, python_bundle, nvidia, userland and results (reading `pyinfra --json`).
"""
