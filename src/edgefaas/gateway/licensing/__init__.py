"""Licensing: who may call a function and who pays for it.

``tokens`` signs and reads the bearer tokens callers present (JWS compact, ES256 or HS256),
``plans`` holds what a license buys (prices, quota), ``store`` keeps plans and licenses, and
``authority`` decides, for one call, whether its token names a live license and on which plan.
"""
