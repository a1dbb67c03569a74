"""Lab stand-ins for SONiC's own daemons, and SONiC's database layout.

Every module here except this one runs on the lab's SONiC devices under Debian's python3
with python3-redis (the device's Python, as SONiC's own daemons use the switch's), so
they import only the standard library and `redis`, never the edgefaas package;
edgefaas.lab.profiles copies them into the device's root filesystem. Each keeps its pure
part (tables in, iptables-restore or FRR text out) apart from its thin loop, so the unit
tests exercise the semantics without a device.
"""
