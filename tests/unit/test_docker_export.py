"""Docker/OCI/Kubernetes exports, Docker import, and the round trip of moby's profile."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from isorun.compile import bpf_verify as V
from isorun.compile import engines as E
from isorun.compile.render import docker as D
from isorun.compile.render import docker_diff as DD
from isorun.compile.render import docker_import as DI
from isorun.compile.render import k8s as K
from isorun.compile.seccomp import Context, build_entries, compile_seccomp, decide
from isorun.errors import ProfileError
from isorun.kernel import syscalls
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
    # every archMap entry is kept: x86_64's on an x86_64 host, aarch64's on an aarch64 one
    assert direct.architectures == ("native", "x86_64", "x32", "i386", "aarch64")
    assert not direct.hardening and direct.default_action == Action("errno", 1)
    # moby lists names of other kernels/arches only; each is reported, none silently lost
    foreign = [w.message for w in warnings if "unknown syscall" not in w.message]
    assert foreign[0].startswith("isorun does not filter SCMP_ARCH_ARM, SCMP_ARCH_LOONGARCH64")
    # names runc drops when built with Debian 12's libseccomp, where moby allows them
    assert [m.split(":")[0] for m in foreign[1:3]] == ["syscalls[0]", "syscalls[17]"]
    assert all("libseccomp 2.5.4" in m and "statmount" in foreign[1] for m in foreign[1:3])
    # runc's ENOSYS stub above the highest listed syscall becomes a rule of its own
    assert foreign[3:] == [
        "runc answers ENOSYS for every number above 466 (removexattrat), the highest"
        " syscall listed: imported as an errno:38 rule for the 1 names above it"
    ]


def test_round_trip_moby_same_decisions_for_every_caps_set_arch_and_kernel() -> None:
    """The export decides as moby's profile does on what the kernel reads: a 32-bit
    argument's high half never decides (personality(0x100000000) is PER_LINUX, which
    moby's own "eq 0" refuses on the register and the native filter allows)."""
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
                        want = DD.docker_decide(MOBY, name, kernel_view(name, args), **kw)
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


def builtin(name: str) -> Seccomp:
    from isorun import api

    return api.load_profile(name).seccomp


def learned_like() -> Seccomp:
    """What `isorun learn` writes for a small program: names plus keyed allow rules."""
    u32 = 0xFFFFFFFF
    return Seccomp(
        allow=("execve", "exit_group", "read", "write", "brk", "arch_prctl"),
        rules=(
            SeccompRule(("socket",), Action("allow"), (ArgCond(0, "masked_eq", 1, u32),)),
            SeccompRule(("ioctl",), Action("allow"), (ArgCond(1, "masked_eq", 0x5401, u32),)),
            SeccompRule(("personality",), Action("allow"), (ArgCond(0, "masked_eq", u32, u32),)),
            SeccompRule(("clone",), Action("allow"), (ArgCond(0, "masked_eq", 0, 0x7E020080),)),
        ),
    )


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


def test_export_oci() -> None:
    oci = json.loads(D.export_oci(service()))
    assert oci["architectures"] == ["SCMP_ARCH_X86_64"]
    assert all("comment" not in r for r in oci["syscalls"])


# The spec schema of security-profiles-operator's SeccompProfile CRD, written from
# bundle/manifests/security-profiles-operator.x-k8s.io_seccompprofiles.yaml at
# kubernetes-sigs/security-profiles-operator a2e4c4bdf (API v1, scope: Cluster).
ACTIONS = {
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
}  # fmt: skip
INT64 = {"type": "integer", "min": 0, "max": (1 << 63) - 1}
INT32 = {"type": "integer", "min": 0, "max": (1 << 31) - 1}
CRD_SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["defaultAction"],
    "properties": {
        "architectures": {"type": "array", "set": True, "items": {"type": "string", "enum": {
            "SCMP_ARCH_NATIVE", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32",
            "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
            "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
            "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE",
            "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64",
            "SCMP_ARCH_RISCV64"}}},
        "baseProfileName": {"type": "string"},
        "defaultAction": {"type": "string", "enum": ACTIONS},
        "flags": {"type": "array", "set": True, "items": {"type": "string", "enum": {
            "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}}},
        "listenerMetadata": {"type": "string"},
        "listenerPath": {"type": "string"},
        "state": {"type": "string", "enum": {"Enabled", "Disabled"}},
        "syscalls": {"type": "array", "items": {
            "type": "object",
            "required": ["action", "names"],
            "properties": {
                "action": {"type": "string", "enum": ACTIONS},
                "args": {"type": "array", "maxItems": 6, "items": {
                    "type": "object",
                    "required": ["index", "op"],
                    "properties": {
                        "index": INT32,
                        "op": {"type": "string", "enum": {
                            "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                            "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}},
                        "value": INT64,
                        "valueTwo": INT64,
                    }}},
                "errnoRet": INT32,
                "names": {"type": "array", "set": True, "minItems": 1,
                          "items": {"type": "string"}},
            }}},
    },
}  # fmt: skip


def crd_errors(value: Any, schema: dict[str, Any], path: str = "spec") -> list[str]:
    """What an API server's structural-schema validation would refuse (pruning included:
    an unknown field is an error here, as ``kubectl apply --validate=strict`` makes it)."""
    kind = schema["type"]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        out = [f"{path}.{k}: unknown field" for k in value if k not in schema["properties"]]
        out += [f"{path}.{k}: required" for k in schema.get("required", ()) if k not in value]
        for key, sub in schema["properties"].items():
            if key in value:
                out += crd_errors(value[key], sub, f"{path}.{key}")
        return out
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: not an array"]
        out = []
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1 << 30):
            out.append(f"{path}: {len(value)} items")
        if schema.get("set") and len(set(map(str, value))) != len(value):
            out.append(f"{path}: duplicate items in a set")
        for n, item in enumerate(value):
            out += crd_errors(item, schema["items"], f"{path}[{n}]")
        return out
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or not schema["min"] <= value <= schema["max"]:
            return [f"{path}: {value!r} is not in [{schema['min']}, {schema['max']}]"]
        return []
    if not isinstance(value, str) or ("enum" in schema and value not in schema["enum"]):
        return [f"{path}: {value!r} not allowed"]
    return []


def read_yaml_subset(text: str) -> Any:
    """The block YAML export_k8s writes (maps, lists, ints, plain and JSON strings)."""
    lines = [ln for ln in text.split("\n---")[0].splitlines() if ln.strip()]

    def scalar(s: str) -> Any:
        if s.startswith('"'):
            return json.loads(s)
        return int(s) if s.lstrip("-").isdigit() else s

    def block(n: int, indent: int) -> tuple[Any, int]:
        if lines[n][indent:].startswith("- "):
            items: list[Any] = []
            while n < len(lines) and lines[n].startswith(" " * indent + "- "):
                rest = lines[n][indent + 2 :]
                if ":" in rest and not rest.startswith('"'):
                    lines[n] = " " * (indent + 2) + rest
                    value, n = block(n, indent + 2)
                else:
                    value, n = scalar(rest), n + 1
                items.append(value)
            return items, n
        obj: dict[str, Any] = {}
        while (
            n < len(lines)
            and lines[n].startswith(" " * indent)
            and not lines[n][indent].isspace()
            and not lines[n][indent:].startswith("- ")
        ):
            key, _, rest = lines[n][indent:].partition(":")
            if rest.strip():
                obj[key], n = scalar(rest.strip()), n + 1
            else:
                nxt = len(lines[n + 1]) - len(lines[n + 1].lstrip())
                obj[key], n = block(n + 1, nxt)
        return obj, n

    return block(0, 0)[0]


def k8s_decide(spec: dict[str, Any], name: str, args: tuple[int, ...]) -> str:
    return DD.docker_decide({**spec, "syscalls": spec["syscalls"]}, name, args)


@pytest.mark.parametrize("profile", ["strict", "build", "web", "test", "learned"])
def test_k8s_export_is_a_valid_spo_seccompprofile_with_the_same_decisions(profile: str) -> None:
    policy = learned_like() if profile == "learned" else builtin(profile)
    text = K.export_k8s(policy, name=f"My {profile}")
    obj = read_yaml_subset(text)
    assert obj == K.k8s_object(policy, name=f"My {profile}")  # the YAML says the dict
    assert obj["apiVersion"] == "security-profiles-operator.x-k8s.io/v1"
    assert obj["kind"] == "SeccompProfile"
    assert obj["metadata"] == {"name": f"my-{profile}"}  # cluster-scoped: no namespace
    assert crd_errors(obj["spec"], CRD_SPEC) == []
    assert f"#       localhostProfile: operator/my-{profile}.json\n" in text
    # without defaultErrnoRet, clone3 keeps its ENOSYS by a rule of its own
    assert k8s_decide(obj["spec"], "clone3", ()) == "errno:38"
    entries, _ = build_entries(policy)
    for name in X86_64:
        for args in [*arg_vectors(name), (0, 0x5412), (0, 0x1_0000_541C), (1 << 63,)]:
            assert k8s_decide(obj["spec"], name, args) == str(decide(policy, name, args, entries))


def test_crd_checker_refuses_what_the_old_export_wrote() -> None:
    old = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"action": "SCMP_ACT_ALLOW", "names": ["ioctl"],
         "args": [{"index": 1, "op": "SCMP_CMP_MASKED_EQ", "value": (1 << 64) - 1,
                   "valueTwo": 0x5412}]}]}  # fmt: skip
    assert crd_errors(old, CRD_SPEC) == [
        "spec.defaultErrnoRet: unknown field",
        f"spec.syscalls[0].args[0].value: {(1 << 64) - 1} is not in [0, {(1 << 63) - 1}]",
    ]


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


def boundary_args(doc: dict[str, Any], name: str) -> list[tuple[int, ...]]:
    """Every value a rule of ``name`` compares with, its neighbours, its image across bit
    63 and with the high word set, on the argument it is compared on."""
    mask64 = (1 << 64) - 1
    out: list[tuple[int, ...]] = [()]
    for rule in doc["syscalls"]:
        if name not in rule["names"]:
            continue
        for arg in rule.get("args") or []:
            for v in {arg["value"], arg["valueTwo"], arg["value"] | arg["valueTwo"]}:
                for w in (v - 1, v, v + 1, v ^ (1 << 63), v | 0xFFFFFFFF_00000000, mask64):
                    args = [0] * 6
                    args[arg["index"]] = w & mask64
                    out.append(tuple(args))
    return out


def assert_same_filter(a: Seccomp, b: Seccomp, probes_doc: dict[str, Any]) -> None:
    """The two policies' BPF programs answer the same for every x86_64 number (and some
    past the table) and every boundary argument."""
    pa, pb = compile_seccomp(a, arch="x86_64").bpf, compile_seccomp(b, arch="x86_64").bpf
    names = {nr: n for n, nr in X86_64.items()}
    # every number: named ones, the gap (335-423), past the table, and x32's range
    numbers = [*range(1024), *(0x40000000 | n for n in (0, 1, 59, 512, 547))]
    for nr in numbers:
        name = names.get(nr, f"nr{nr}")
        for args in boundary_args(probes_doc, name):
            got_a, got_b = V.evaluate(pa, nr, args=args), V.evaluate(pb, nr, args=args)
            assert got_a == got_b, (
                name,
                [hex(x) for x in args],
                V.describe(got_a),
                V.describe(got_b),
            )


@pytest.mark.parametrize("profile", ["strict", "build", "web", "test", "learned", "service"])
def test_docker_export_imports_back_to_the_same_filter(profile: str) -> None:
    if profile == "learned":
        policy = learned_like()
    elif profile == "service":
        policy = service()
    else:
        policy = builtin(profile)
    text = D.export_docker(policy)
    doc = json.loads(text)
    for rule in doc["syscalls"]:
        for arg in rule.get("args") or []:
            assert 0 <= arg["value"] < 1 << 63 and 0 <= arg["valueTwo"] < 1 << 63, arg
    imported, _warnings = DI.docker_to_policy(text, f"{profile}.json")
    toml, _ = DI.import_docker(text, f"{profile}.json")
    assert load_layer(toml.encode(), "rt.toml", "rt").profile.seccomp == imported
    assert_same_filter(policy, imported, doc)


def test_strict_export_is_at_most_twice_mobys_rule_count() -> None:
    strict = json.loads(D.export_docker(builtin("strict")))
    assert len(MOBY["syscalls"]) == 33
    assert len(strict["syscalls"]) <= 2 * len(MOBY["syscalls"])
    # a syscall refused for every argument is a plain name, not a pile of range rules
    plain = [r for r in strict["syscalls"] if "args" not in r and r["action"] == "SCMP_ACT_ERRNO"]
    assert plain and "unshare" in plain[0]["names"]


def import_warnings(doc: dict[str, Any]) -> tuple[Seccomp, list[str]]:
    policy, warnings = DI.docker_to_policy(json.dumps(doc), "p.json")
    # the ENOSYS stub's note (a small profile lists little) is tested on its own
    return policy, [w.message for w in warnings if not w.message.startswith("runc answers")]


BASE = {"names": ["execve", "exit_group", "read", "write"], "action": "SCMP_ACT_ALLOW"}


def test_mask_zero_always_matches_and_says_so() -> None:
    mask0 = {"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": 0, "valueTwo": 0}
    rule = {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [mask0]}
    policy, said = import_warnings({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [BASE, rule]})
    assert said == [
        "syscalls[1].args[0]: masked_eq with mask (value) 0 always matches;"
        " imported as no condition"
    ]
    assert decide(policy, "personality", (0x12345,)) == Action("allow")
    compile_seccomp(policy)  # and it compiles


def test_podman_errno_names_are_honoured() -> None:
    doc = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOSYS", "syscalls": [
        BASE, {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errno": "EACCES"},
        {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errno": "EPERM",
         "errnoRet": 1}]}  # fmt: skip
    policy, said = import_warnings(doc)
    assert policy.default_action == Action("errno", 38)
    assert decide(policy, "mkdir", ()) == Action("errno", 13)
    assert decide(policy, "rmdir", ()) == Action("errno", 1)
    assert not any("unknown key" in m for m in said)
    assert "defaultAction: errno 'ENOSYS' without a number: podman answers ENOSYS" in said[0]


def test_dropped_flags_and_kill_default_are_warned() -> None:
    doc = {"defaultAction": "SCMP_ACT_KILL", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
           "syscalls": [BASE]}  # fmt: skip
    _policy, said = import_warnings(doc)
    assert any(m.startswith("defaultAction SCMP_ACT_KILL: engines hang in `runc create`")
               for m in said)  # fmt: skip
    assert any(m.startswith("flags ['SECCOMP_FILTER_FLAG_LOG'] are not imported") for m in said)


def test_kill_default_export_is_warned() -> None:
    policy = Seccomp(allow=("@system-service",), unknown_action=Action("kill_process"))
    assert any("`runc create` hangs" in w for w in E.export_warnings(policy))


def test_default_allow_import_passes_check() -> None:
    from isorun import api

    doc = {"defaultAction": "SCMP_ACT_ALLOW",
           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}  # fmt: skip
    toml, _ = DI.import_docker(json.dumps(doc), "allow.json")
    profile = load_layer(toml.encode(), "allow.toml", "allow").profile
    api.compile_plan(profile)  # raised "allows neither execve nor exit_group" before
    assert decide(profile.seccomp, "mkdir", ()) == Action("errno", 1)
    assert decide(profile.seccomp, "execve", ()) == Action("allow")


def test_runc_enosys_stub_is_imported_and_diffed() -> None:
    """runc answers ENOSYS above the highest listed number; an old profile (as jessfraz's
    chrome.json, written before newer syscalls) keeps that answer after a round trip."""
    doc = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["execve", "exit_group", "read", "write", "openat"],
         "action": "SCMP_ACT_ALLOW"}]}  # fmt: skip
    policy, warnings = DI.docker_to_policy(json.dumps(doc), "old.json")
    assert DD.docker_decide(doc, "mkdir", ()) == "errno:1"  # below openat (257)
    assert DD.docker_decide(doc, "pidfd_open", ()) == "errno:38"  # above it
    assert decide(policy, "mkdir", ()) == Action("errno", 1)
    assert decide(policy, "pidfd_open", ()) == Action("errno", 38)
    assert any("above 257 (openat)" in w.message for w in warnings)
    # the export lists the highest syscall that is not ENOSYS, so runc's stub starts after it
    exported = json.loads(D.export_docker(policy))
    for name in ("mkdir", "pidfd_open", "openat", "statx"):
        assert DD.docker_decide(exported, name, ()) == str(decide(policy, name, ()))
    # diff sees what runc makes of two profiles that name different highest syscalls
    wider = {
        **doc,
        "syscalls": [*doc["syscalls"], {"names": ["mseal"], "action": "SCMP_ACT_ERRNO"}],
    }
    policy_b, _ = DI.docker_to_policy(json.dumps(wider), "wider.json")
    assert DD.diff_engine_numbers(policy, policy_b, doc, wider) == [
        "numbers 258-462: errno:38 -> errno:1 under runc (its ENOSYS stub answers numbers"
        " above the highest listed syscall: A 257, B 462)"
    ]


def test_diff_of_imported_moby_against_strict_does_not_crash() -> None:
    lines = DD.diff_policies(imported_policy(), builtin("strict"))
    assert lines and all(isinstance(line, str) for line in lines)
    assert any(line.startswith("personality:") for line in lines) or lines


def test_diff_finds_no_difference_between_a_profile_and_its_round_trip() -> None:
    policy = builtin("strict")
    imported, _ = DI.docker_to_policy(D.export_docker(policy), "strict.json")
    assert DD.diff_policies(policy, imported) == []


def test_a_middle_range_is_points_or_uint64_for_docker_and_refused_for_k8s() -> None:
    small = Seccomp(
        allow=("@system-service",),
        rules=(
            SeccompRule(("acct",), Action("allow"), (ArgCond(0, "ge", 2), ArgCond(0, "le", 9))),
        ),
    )
    wide = Seccomp(
        allow=("@system-service",),
        rules=(
            SeccompRule(("acct",), Action("allow"), (ArgCond(0, "ge", 1), ArgCond(0, "le", 999))),
        ),
    )
    probes = [0, 1, 2, 3, 8, 9, 10, 998, 999, 1000, (1 << 63) | 2, (1 << 64) - 1]
    for policy in (small, wide):
        text = D.export_docker(policy)
        doc = json.loads(text)
        imported, _ = DI.docker_to_policy(text, "range.json")
        toml, _ = DI.import_docker(text, "range.json")
        assert load_layer(toml.encode(), "range.toml", "range").profile.seccomp == imported
        for v in probes:
            want = str(decide(policy, "acct", (v,)))
            assert (
                DD.docker_decide(doc, "acct", (v,)) == want == str(decide(imported, "acct", (v,)))
            )
    # 2..9: eight points, every value int64; 1..999 needs 2**64-wide masks: refused for SPO
    assert crd_errors(K.k8s_object(small)["spec"], CRD_SPEC) == []
    with pytest.raises(ProfileError, match=r"acct: the condition .* cannot be written with values"):
        K.export_k8s(wide)


def test_an_export_with_uint64_values_imports_to_the_same_filter() -> None:
    """isorun's exports before int64-safety wrote the compiler's rules as they were, with
    masks of 2**63 and more (issue #14); such files still import exactly."""
    from isorun.compile.seccomp import plan_rules

    # strict's own conditions are on 32-bit arguments now (masks below 2**32); a range on
    # a 64-bit argument before another argument still compiles to such masks
    acct = SeccompRule(("acct",), Action("errno", 13), (ArgCond(0, "ne", 5), ArgCond(1, "eq", 1)))
    policy = dataclasses.replace(builtin("strict"), rules=(acct,))
    rules, _ = plan_rules(policy, ("x86_64",), Context())
    doc: dict[str, Any] = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}
    doc["syscalls"] = [
        {"names": [r.syscall], **D._docker_action(Action(*_split(r.action)))}
        | ({"args": D._docker_args(r.conditions)} if r.conditions else {})
        for r in rules
        if r.action != "errno:38"
    ]
    assert any(a["value"] >= 1 << 63 for r in doc["syscalls"] for a in r.get("args", []))
    imported, _ = DI.docker_to_policy(json.dumps(doc), "old.json")
    assert DD.diff_policies(policy, imported) == []


def _split(action: str) -> tuple[str, int]:
    kind, _, num = action.partition(":")
    return kind, int(num or 0)


def test_when_export_compares_32_bit_arguments_on_their_low_half() -> None:
    """A profile with `when` exports its rules as written, which an engine compares on the
    whole register; on a 32-bit argument the export now spells the low 32 bits out
    (masked_eq cubes), so Docker and the re-imported profile decide socket(0x100000028)
    as the kernel and the native filter do: AF_VSOCK. (OCI and k8s refuse `when`; their
    exports come from the compiler's regions, which compare the low half already.)"""
    from isorun.profile.schema import When

    hi = 1 << 32
    policy = Seccomp(
        allow=("execve", "exit_group"),
        hardening=False,
        default_action=Action("errno", 1),
        unknown_action=Action("errno", 1),
        rules=(
            SeccompRule(
                ("socket",), Action("allow"), (ArgCond(0, "ne", 40),), when=When(not_caps=("X",))
            ),
            SeccompRule(("personality",), Action("allow"), (ArgCond(0, "eq", 0),)),
            SeccompRule(
                ("setpriority", "mremap"),
                Action("errno", 13),
                (ArgCond(0, "le", 1), ArgCond(3, "eq", 2)),
                when=When(arches=("amd64",)),
            ),
        ),
    )
    docker = json.loads(D.export_docker(policy))
    reimported, _ = DI.docker_to_policy(json.dumps(docker), "exported.json")
    native = V.decode(compile_seccomp(policy).bpf)
    again = V.decode(compile_seccomp(reimported).bpf)
    probes = {
        "socket": [(40,), (hi | 40,), (41,), (hi | 41,), (0xFFFFFFFF,), ((1 << 64) - 1,)],
        "personality": [(0,), (hi,), (1,), (hi | 1,)],
        "setpriority": [(1, 0, 0, 2), (hi | 1, 0, 0, 2), (2, 0, 0, 2), (0, 0, 0, hi | 2)],
        "mremap": [(1, 0, 0, 2), (hi | 1, 0, 0, 2), (0, 0, 0, hi | 2)],
    }
    for name, vectors in probes.items():
        nr = X86_64[name]
        for args in vectors:
            want = str(decide(policy, name, args))
            assert V.describe(V.evaluate(native, nr, args=args)) == want, (name, args)
            assert DD.docker_decide(docker, name, args) == want, (name, args)
            assert V.describe(V.evaluate(again, nr, args=args)) == want, (name, args)
    assert decide(policy, "socket", (hi | 40,)) == Action("errno", 1)
    # on a 32-bit argument the engines' libseccomp gets masked_eq only, never a range
    # or ne (mremap's unsigned long arguments keep their 64-bit comparisons)
    for r in docker["syscalls"]:
        low = syscalls.narrow_args(r["names"][0])
        assert all(a["op"] == "SCMP_CMP_MASKED_EQ" for a in r.get("args", []) if a["index"] in low)
    assert any(a["op"] == "SCMP_CMP_LE" for r in docker["syscalls"] for a in r.get("args", []))
