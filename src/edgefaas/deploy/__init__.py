"""What the deploy files use on the machine running pyinfra; nothing here runs on a device.

artifacts and artifact_source (each artifact for a device's own architecture), facts (every
fact class), settings (host data and its defaults), secrets (the site's K3S token and
enrollment key; dry_run: none made by `pyinfra --dry`), functions (the functions the gateway
keeps), triton (how Triton runs on each device), hosts, inventory (the inventory check before
any host is touched), services, kube_account, control_plane_acl, python_bundle, nvidia,
userland and results (reading `pyinfra --json`).
"""
