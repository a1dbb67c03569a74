"""Edge-node certification through Parsec (Scenario 2, Demo 1 of the seed slides).

certificates: a small certificate authority whose signing key lives in Parsec, node
certificate requests signed by each node's own Parsec-held key, and the checks a server
runs on a presented certificate (tampered, expired, revoked, or not from its CA).
"""
