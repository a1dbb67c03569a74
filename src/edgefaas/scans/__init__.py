"""The security scans Akraino's release process asks of a blueprint, run through an inventory.

Lynis on every device (its tree carried over SSH into a temporary directory, nothing left
behind), kube-hunter against every device's address, and a vulnerability listing of what the
blueprint installs (Debian packages against the Debian security suite's index that this
machine's apt has, the Python wheelhouse against the package index's advisories). Findings
that concern the blueprint's own services fail unless `accepted` explains them.

    python -m edgefaas.scans --inventory inventories/lab.py   # what `scripts/task scan` runs
"""
