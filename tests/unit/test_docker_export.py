"""Docker/OCI/Kubernetes exports, Docker import, and the round trip of moby's profile."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from isorun.compile import bpf_verify as V
from isorun.compile import docker as D
from isorun.compile import docker_diff as DD
from isorun.compile import docker_import as DI
from isorun.compile import syscalls
from isorun.compile.seccomp import Context, build_entries, compile_seccomp, decide
from isorun.errors import ProfileError
from isorun.profile.loader import load_layer
from isorun.profile.schema import Action, ArgCond, Seccomp, SeccompRule

ROOT = Path(__file__).resolve().parents[2]
MOBY_TEXT = json.dumps(
    json.loads((ROOT / "src/isorun/data/docker-default.json").read_text())["profile"], indent=1
)
MOBY = json.loads(MOBY_TEXT)
X86_64 = syscalls.table("x86_64")
DEFAULT_CAPS = frozenset(
    json.loads((ROOT / "src/isorun/data/docker-default.json").read_text())["default_caps"]
)
PROBES = (
    0,
    1,
    8,
    37,
    38,
    39,
    40,
    41,
    0x20000,
    0x20008,
    0x10000000,
    0x7E020000,
    0xFFFFFFFF,
    0x1_0000_0000,
    (1 << 63) - 1,
)


def mentioned_caps(doc: dict[str, Any]) -> set[str]:
    caps: set[str] = set()
    for rule in doc["syscalls"]:
        for key in ("includes", "excludes"):
            caps |= set((rule.get(key) or {}).get("caps") or [])
    return caps


def cap_sets(doc: dict[str, Any]) -> list[frozenset[str]]:
    caps = mentioned_caps(doc)
    return [frozenset(), DEFAULT_CAPS, frozenset(caps), *(frozenset({c}) for c in sorted(caps))]


def arg_vectors(name: str = "") -> list[tuple[int, ...]]:
    """Probes around every value moby's argument checks use (only for those syscalls)."""
    if name and name not in ARG_CHECKED:
        return [(), (1, 1)]
    return [(), *((v,) for v in PROBES), *((0, v) for v in PROBES)]


ARG_CHECKED = {"socket", "personality", "clone", "ioctl", "fchmod", "acct", "getpriority"}


def kernel_view(name: str, args: tuple[int, ...]) -> tuple[int, ...]:
    """The arguments as the syscall reads them: 32-bit ones truncated to their low half."""
    narrow = syscalls.narrow_args(name)
    return tuple(v & 0xFFFFFFFF if i in narrow else v for i, v in enumerate(args))


def imported_policy() -> Seccomp:
    toml, _ = DI.import_docker(MOBY_TEXT, "default.json")
    return load_layer(toml.encode(), "imported.toml", "imported").profile.seccomp


def test_import_of_moby_default_reads_back_through_the_loader() -> None:
    direct, warnings = DI.docker_to_policy(MOBY_TEXT, "default.json")
    assert imported_policy() == direct
    assert direct.architectures == ("native", "x32", "i386")
    assert not direct.hardening and direct.default_action == Action("errno", 1)
    # moby lists names of other kernels/arches only; each is reported, none silently lost
    assert all("unknown syscall" in w.message for w in warnings)


def test_round_trip_moby_same_decisions_for_every_caps_set_arch_and_kernel() -> None:
    exported = json.loads(D.export_docker(imported_policy()))
    names = set(X86_64)
    for rule in MOBY["syscalls"]:
        names |= set(rule["names"])
    checked = 0
    for caps in cap_sets(MOBY):
        for arch in ("x86_64", "aarch64", "s390x"):
            for kernel in ((4, 4), (6, 1)):
                for name in sorted(names):
                    for args in arg_vectors(name):
                        kw: dict[str, Any] = {"caps": caps, "arch": arch, "kernel": kernel}
                        want = DD.docker_decide(MOBY, name, args, **kw)
                        assert DD.docker_decide(exported, name, args, **kw) == want, (
                            name,
                            args,
                            sorted(caps),
                            arch,
                            kernel,
                        )
                        checked += 1
    assert checked > 50_000


@pytest.mark.parametrize("caps", cap_sets(MOBY)[:4], ids=["none", "docker", "all", "first"])
def test_compiled_import_matches_docker_semantics(caps: frozenset[str]) -> None:
    """The BPF we compile from the imported profile answers what Docker would."""
    policy = imported_policy()
    prog = compile_seccomp(policy, caps=caps, kernel=(6, 1))
    insns = V.decode(prog.bpf)
    # names the installed libseccomp cannot place on every ABI fall to the default, as they
    # do under runc with the same libseccomp; compile_seccomp reports each of them
    missing = {u.name for u in prog.unresolved if u.arch == "x86_64"}
    for name, nr in X86_64.items():
        for args in arg_vectors(name):
            # Docker decides on the 64-bit register; isorun on what the kernel reads of a
            # 32-bit argument (socket(0x100000028) is AF_VSOCK): compare on that
            want = DD.docker_decide(MOBY, name, kernel_view(name, args), caps=caps, kernel=(6, 1))
            if name in missing:
                want = "errno:1"
            assert V.describe(V.evaluate(insns, nr, args=args)) == want, (name, args)
    assert V.evaluate(insns, 1000) == V.RET_ERRNO | 1  # Docker's default for unknown numbers


def service() -> Seccomp:
    return Seccomp(
        allow=("@system-service",),
        rules=(
            SeccompRule(("mkdir",), Action("errno", 13), comment="no new dirs"),
            SeccompRule(("acct",), Action("allow"), (ArgCond(0, "eq", 0),)),
            SeccompRule(
                ("fchmod",), Action("errno", 13), (ArgCond(1, "masked_eq", 0o4000, 0o4000),)
            ),
        ),
    )


def test_export_of_isorun_profile_keeps_isorun_meaning() -> None:
    policy = service()
    doc = json.loads(D.export_docker(policy))
    assert doc["defaultAction"] == "SCMP_ACT_ERRNO" and doc["defaultErrnoRet"] == 38
    assert doc["archMap"] == [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": None}]
    entries, _ = build_entries(policy)
    for name in X86_64:
        for args in [*arg_vectors(name), (0, 0x5412), (0, 0x1_0000_541C), (3, 0o4755)]:
            want = str(decide(policy, name, args, entries))
            assert DD.docker_decide(doc, name, args) == want, (name, args)


def test_export_is_deterministic_and_uses_docker_masked_eq_order() -> None:
    a, b = D.export_docker(service()), D.export_docker(service())
    assert a == b
    doc = json.loads(a)
    tiocsti = [
        r for r in doc["syscalls"] if r["names"] == ["ioctl"] and r["action"] == "SCMP_ACT_ERRNO"
    ]
    assert {"index": 1, "value": 0xFFFFFFFF, "valueTwo": 0x5412, "op": "SCMP_CMP_MASKED_EQ"} in [
        arg for r in tiocsti for arg in r["args"]
    ]


def test_export_oci_and_k8s() -> None:
    oci = json.loads(D.export_oci(service()))
    assert oci["architectures"] == ["SCMP_ARCH_X86_64"]
    assert all("comment" not in r for r in oci["syscalls"])
    k8s = D.export_k8s(service(), name="My Web")
    assert k8s.startswith(
        "apiVersion: security-profiles-operator.x-k8s.io/v1beta1\n"
        "kind: SeccompProfile\nmetadata:\n  name: my-web\n"
    )
    assert "  defaultAction: SCMP_ACT_ERRNO\n  defaultErrnoRet: 38\n" in k8s
    assert "#       localhostProfile: operator/default/my-web.json" in k8s
    assert '    - "mkdir"' in k8s


def test_oci_refuses_when_rules() -> None:
    with pytest.raises(ProfileError, match="OCI seccomp has no conditions"):
        D.export_oci(imported_policy())


def test_structural_export_refuses_hardening() -> None:
    policy = imported_policy()
    from dataclasses import replace

    with pytest.raises(ProfileError, match="hardening"):
        D.export_docker(replace(policy, hardening=True))


def test_malformed_json_has_line_and_column() -> None:
    with pytest.raises(ProfileError) as err:
        DI.import_docker(
            '{\n  "defaultAction": "SCMP_ACT_ALLOW",\n  "syscalls": [ {"names": ["mkdir"]',
            "bad.json",
        )
    assert err.value.exit_code == 2
    assert err.value.render().startswith("bad.json:3:")
    assert "malformed Docker seccomp JSON" in err.value.render()


def test_unknown_name_and_keys_are_warned_with_location() -> None:
    text = (
        '{"defaultAction":"SCMP_ACT_ALLOW","defaultActoin":1,\n'
        '"syscalls":[{"names":["mkdir","mkdri"],"action":"SCMP_ACT_ERRNO","errnoRet":1,'
        '"bogus":2}]}'
    )
    _, warnings = DI.import_docker(text, "p.json")
    rendered = [w.render() for w in warnings]
    assert any(
        "p.json:2:" in r and "unknown syscall 'mkdri'" in r and "'mkdir'" in r for r in rendered
    )
    assert any("unknown key 'defaultActoin'" in r for r in rendered)
    assert any("unknown key 'bogus'" in r for r in rendered)


def test_same_index_twice_is_split_like_runc() -> None:
    text = (
        '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getpriority"],'
        '"action":"SCMP_ACT_ERRNO","errnoRet":13,"args":[{"index":0,"value":1,'
        '"op":"SCMP_CMP_GE"},{"index":0,"value":2,"op":"SCMP_CMP_LE"}]}]}'
    )
    policy, warnings = DI.docker_to_policy(text, "p.json")
    assert any("OR every condition" in w.message for w in warnings)
    assert len(policy.rules) == 2
    doc = json.loads(text)
    exported = json.loads(D.export_docker(policy))
    for v in (0, 1, 2, 3, 100):
        assert (
            DD.docker_decide(exported, "getpriority", (v,))
            == DD.docker_decide(doc, "getpriority", (v,))
            == "errno:13"
        )


def test_go_arch_names_warned() -> None:
    text = (
        '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],'
        '"action":"SCMP_ACT_ERRNO","includes":{"arches":["x86_64"]}}]}'
    )
    _, warnings = DI.import_docker(text, "p.json")
    assert any("'x86_64' is not a Docker (Go) architecture name" in w.message for w in warnings)


@pytest.mark.parametrize(
    "text,match",
    [
        ('{"defaultAction":"SCMP_ACT_BOGUS"}', "unsupported action 'SCMP_ACT_BOGUS'"),
        (
            '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["kill"],"action":"SCMP_ACT_ALLOW",'
            '"args":[{"index":7,"value":1,"op":"SCMP_CMP_EQ"}]}]}',
            "index 7 out of range",
        ),
        (
            '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["kill"],"action":"SCMP_ACT_ALLOW",'
            '"args":[{"index":0,"value":1,"op":"SCMP_CMP_EQUAL"}]}]}',
            "unknown operator",
        ),
        (
            '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["kill"],"action":"SCMP_ACT_ALLOW",'
            '"includes":{"minKernel":"four"}}]}',
            "not a kernel version",
        ),
        ("[]", "is a JSON object"),
    ],
)
def test_bad_docker_profiles_are_profile_errors(text: str, match: str) -> None:
    with pytest.raises(ProfileError, match=match):
        DI.import_docker(text, "p.json")


def test_empty_object_means_no_filter() -> None:
    toml, warnings = DI.import_docker("{}", "e.json")
    assert "enabled = false" in toml and warnings


def test_diff_policies() -> None:
    a = service()
    b = Seccomp(
        allow=("@system-service", "reboot"),
        rules=(
            SeccompRule(("mkdir",), Action("errno", 1)),
            SeccompRule(
                ("fchmod",), Action("errno", 13), (ArgCond(1, "masked_eq", 0o2000, 0o6000),)
            ),
        ),
    )
    lines = DD.diff_policies(a, b)
    assert "reboot: allowed only in B (A: errno:1)" in lines
    assert "mkdir: errno:13 -> errno:1" in lines
    assert any(line.startswith("acct: argument conditions differ") for line in lines)
    assert any(line.startswith("fchmod: argument conditions differ") for line in lines)
    assert DD.diff_policies(a, service()) == []


def test_shared_edge_profiles_import_or_fail_with_location() -> None:
    edge = ROOT.parent / "shared/tools/seccomp-testdata/edge"
    if not edge.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{edge} missing: CI has shared/ beside the checkout")
        pytest.skip("shared testdata missing")
    for path in sorted(edge.glob("*.json")):
        try:
            DI.import_docker(path.read_text(), str(path))
        except ProfileError as err:
            assert err.render().startswith(str(path)), path


def test_context_default_is_no_caps() -> None:
    assert Context().caps == frozenset()
