"""The gateway's HTTP handlers by concern; ``app`` puts them in its route table.

``admin`` is what every admin route shares (credentials, the Gateway, backend calls, request
parsing); ``monitoring``, ``functions``, ``nodes``, ``billing`` and ``perf_report`` are the
handlers. Function calls themselves are ``invoke``'s.
"""
