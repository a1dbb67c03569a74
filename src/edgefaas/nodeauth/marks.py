"""What the authentication server writes on K3S's Node objects and Events, and the gateway reads.

The server certifies a node by labelling and annotating it, quarantines it with an
annotation, and leaves an Event when it removes it. The gateway shows all three in its
node list. Kept apart from the server, with no imports, so the gateway can read these
names without loading the certification flow (Parsec client, protobuf, cryptography).
"""

from __future__ import annotations

CERTIFIED_LABEL = "edgefaas.io/certified"  # "true" on a certified node
CERTIFIED_AT = "edgefaas.io/certified-at"  # annotation: when, ISO 8601
CERTIFICATE_SERIAL = "edgefaas.io/certificate-serial"  # annotation: the certificate's serial, hex
QUARANTINED = "edgefaas.io/quarantined"  # annotation: why the node waits, cordoned
# annotation, while beyond the tolerance: the node's clock minus the server's, in seconds
CLOCK_SKEW = "edgefaas.io/clock-skew-s"

# Node Events are namespaced; a node has no namespace of its own, so they go to "default".
EVENT_NAMESPACE = "default"
REMOVED_REASON = "CertificationFailed"  # the Event's reason when the server removed the node
CLOCK_SKEW_REASON = "ClockSkew"  # the Event's reason when a node's clock goes beyond the tolerance
CLOCK_SKEW_CLEARED_REASON = "ClockSkewCleared"  # ... and when it comes back within it
