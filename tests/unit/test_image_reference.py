"""Image references as the distribution registry reads them: what a deploy's ``image`` may be."""

from __future__ import annotations

import pytest

from edgefaas.backends import image_reference as ir

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "registry", "path", "tag"),
    [
        ("hello", "docker.io", "hello", None),
        ("functions/figlet:0.13.0", "docker.io", "functions/figlet", "0.13.0"),
        ("ghcr.io/openfaas/figlet:latest", "ghcr.io", "openfaas/figlet", "latest"),
        ("10.0.0.1:5000/edgefaas/hello:1.0", "10.0.0.1:5000", "edgefaas/hello", "1.0"),
        ("localhost/a__b/c-d--e.f:v_1", "localhost", "a__b/c-d--e.f", "v_1"),
        ("[fd00::1]:5000/x/y", "[fd00::1]:5000", "x/y", None),
    ],
)
def test_references_that_registries_accept(text, registry, path, tag):
    ref = ir.parse(text)
    assert (ref.registry, ref.path, ref.tag) == (registry, path, tag)


def test_a_digest_pins_the_image():
    digest = "sha256:" + "ab" * 32
    ref = ir.parse(f"reg.lab:5000/fn@{digest}")
    assert ref.digest == digest and ref.tag is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "UPPER/case:1",
        "reg.lab:5000/Fn:1",
        "fn:",
        "fn:bad tag",
        "fn:" + "t" * 129,
        "/fn",
        "fn//x",
        "fn@sha256:1234",
        "a" * 256,
        "fn:1;rm -rf /",
    ],
)
def test_references_that_no_registry_accepts_are_refused_saying_the_form(text):
    with pytest.raises(ir.InvalidReference, match=r"image reference|digest"):
        ir.parse(text)


def test_registry_host_brackets_ipv6():
    assert ir.registry_host("10.1.2.3", 5000) == "10.1.2.3:5000"
    assert ir.registry_host("fd00::1", 5000) == "[fd00::1]:5000"
