"""The announcer's tables on a cloud server (edgefaas.sonic.frr_tables): FRR written as SONiC's
bgpcfgd would write it, through a vtysh that keeps a running configuration and logs each change."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from edgefaas.sonic import announce
from edgefaas.sonic.frr_tables import FrrTables

from .test_announce import PLAN

pytestmark = pytest.mark.unit

RUNNING = """\
frr defaults traditional
!
router bgp 65200
 no bgp network import-check
 neighbor 10.77.1.1 remote-as 65000
 !
 address-family ipv4 unicast
  network 10.255.0.1/32 route-map FROM_SDN_SLB_ROUTES_RM
  network 10.9.0.0/24
 exit-address-family
exit
!
router bgp 65300 vrf other
 address-family ipv4 unicast
  network 10.255.1.7/32 route-map FROM_SDN_APPLIANCE_ROUTES_RM
 exit-address-family
exit
!
route-map FROM_SDN_SLB_ROUTES_RM permit 100
 set community 65100:100
exit
!
end
"""


@pytest.fixture
def vtysh(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """A vtysh: `show running-config` prints the file `running`; `configure terminal` logs the
    commands after it to `changes`, one JSON list per call."""
    running, changes = tmp_path / "running", tmp_path / "changes"
    running.write_text(RUNNING)
    script = tmp_path / "vtysh.py"
    script.write_text(
        textwrap.dedent(
            f"""\
            import json, sys
            args = [a for a in sys.argv[1:] if a != "-c"]
            if args == ["show running-config"]:
                print(open({str(running)!r}).read(), end="")
            elif args[:1] == ["configure terminal"]:
                with open({str(changes)!r}, "a") as out:
                    out.write(json.dumps(args[1:]) + "\\n")
            else:
                sys.exit("unexpected: " + repr(args))
            """
        )
    )
    return [sys.executable, str(script)], running, changes


def _changes(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_what_is_advertised_is_read_from_its_own_bgp_instance_and_only_the_announcer_s(vtysh):
    command, _, _ = vtysh
    tables = FrrTables(65200, prepend=3, frr=announce.Frr(command))
    # 10.9.0.0/24 is not the announcer's; the other instance's network is not this one's.
    assert tables.advertised(announce.parse_plan(PLAN)) == {"10.255.0.1/32": "FROM_SDN_SLB_ROUTES"}


def test_advertising_and_withdrawing_write_bgpcfgd_s_network_statements(vtysh):
    command, _, changes = vtysh
    tables = FrrTables(65200, frr=announce.Frr(command))
    tables.advertise("10.255.1.7/32", "FROM_SDN_APPLIANCE_ROUTES")
    tables.withdraw("10.255.0.1/32")
    inside = ["router bgp 65200", "address-family ipv4 unicast"]
    assert _changes(changes) == [
        [
            *inside,
            "network 10.255.1.7/32 route-map FROM_SDN_APPLIANCE_ROUTES_RM",
            "exit-address-family",
            "exit",
        ],
        [*inside, "no network 10.255.0.1/32", "exit-address-family", "exit"],
    ]


def test_a_profile_without_its_prepend_is_written_again_with_it(vtysh):
    command, running, changes = vtysh
    tables = FrrTables(65200, prepend=3, frr=announce.Frr(command))
    # The community alone (an FRR restart's leftovers, or bgpcfgd's entry) is not the cloud's.
    assert tables.profile("FROM_SDN_SLB_ROUTES") is None
    assert tables.profile("FROM_SDN_APPLIANCE_ROUTES") is None
    tables.set_profile("FROM_SDN_SLB_ROUTES", "65100:100")
    assert _changes(changes) == [
        [
            "route-map FROM_SDN_SLB_ROUTES_RM permit 100",
            "set community 65100:100",
            "set as-path prepend 65200 65200 65200",
            "exit",
        ]
    ]
    running.write_text(
        RUNNING.replace(
            " set community 65100:100\n", " set community 65100:100\n set as-path prepend 65200 65200 65200\n"
        )
    )
    assert tables.profile("FROM_SDN_SLB_ROUTES") == "65100:100"
    # Without a prepend asked for, the community is all there is to it.
    assert FrrTables(65200, frr=announce.Frr(command)).profile("FROM_SDN_SLB_ROUTES") == "65100:100"


def test_a_refusal_by_vtysh_is_an_error_naming_what_it_said(tmp_path):
    script = tmp_path / "vtysh.py"
    script.write_text("import sys\nprint('% Unknown command: network x')\n")
    with pytest.raises(OSError, match="vtysh refused: % Unknown command"):
        FrrTables(65200, frr=announce.Frr([sys.executable, str(script)])).advertise(
            "x", "FROM_SDN_SLB_ROUTES"
        )


@pytest.mark.parametrize(("asn", "prepend"), [(0, 1), (65200, 11)])
def test_an_impossible_as_or_prepend_is_refused(asn, prepend):
    with pytest.raises(ValueError):
        FrrTables(asn, prepend)


def test_the_announcer_on_a_cloud_server_binds_its_addresses_and_writes_frr_itself(tmp_path, monkeypatch):
    """`edgefaas announce --frr-asn`: FRR's tables instead of SONiC's, and the addresses on lo and
    the functions' route-maps as on a switch."""
    from click.testing import CliRunner

    from edgefaas.sonic import announce_cli

    made: dict[str, object] = {}

    class Captured:
        def __init__(self, settings, tables, frr, loopback):
            made.update(tables=tables, frr=frr, loopback=loopback)

    monkeypatch.setattr(announce, "Announcer", Captured)
    monkeypatch.setattr(announce, "run", lambda announcer, once=False: 0)
    plan = tmp_path / "wan.json"
    plan.write_text(json.dumps(PLAN))
    args = ["--plan", str(plan), "--frr-asn", "65200", "--prepend", "3"]
    result = CliRunner().invoke(announce_cli.announce_command, args)
    assert result.exit_code == 0, result.output
    assert isinstance(made["tables"], FrrTables) and made["tables"].prepend == 3
    assert isinstance(made["frr"], announce.Frr) and isinstance(made["loopback"], announce.Loopback)
    refused = CliRunner().invoke(announce_cli.announce_command, ["--plan", str(plan), "--prepend", "3"])
    assert refused.exit_code == 2 and "--prepend needs --frr-asn" in refused.output
