"""Helpers that run on the control machine inside pyinfra deploys; never shipped to devices."""
