"""isorun export / import / diff through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from isorun.cli.main import cli


def test_export_docker_is_json_with_errno_default() -> None:
    result = CliRunner().invoke(cli, ["export", "docker", "strict"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["defaultAction"] == "SCMP_ACT_ERRNO"
    # strict allows syscalls Debian 12's libseccomp cannot name: runc would drop them
    assert "libseccomp 2.5.4 (Debian 12's runc and podman) does not know" in result.stderr
    assert "statmount" in result.stderr


def test_export_k8s_is_cluster_scoped_v1_without_default_errno() -> None:
    result = CliRunner().invoke(cli, ["export", "k8s", "strict", "--arch", "x86_64"])
    assert result.exit_code == 0, result.output
    head = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\n"
    assert result.stdout.startswith(head + "metadata:\n  name: strict\nspec:\n")
    assert "defaultErrnoRet" not in result.stdout.split("\n---")[0]
    assert "namespace" not in result.stdout
    assert "localhostProfile: operator/strict.json" in result.stdout


def test_export_docker_for_aarch64() -> None:
    result = CliRunner().invoke(cli, ["export", "docker", "strict", "--arch", "aarch64"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["archMap"] == [{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": None}]
    names = {n for rule in doc["syscalls"] for n in rule["names"]}
    assert "open" not in names and "openat" in names  # aarch64 has no open(2)


def test_export_bpf_to_file(tmp_path: Path) -> None:
    out = tmp_path / "f.bpf"
    result = CliRunner().invoke(cli, ["export", "bpf", "strict", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size % 8 == 0 and out.stat().st_size > 0


def test_import_malformed_json_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_ALLOW",\n "syscalls": [')
    result = CliRunner().invoke(cli, ["import", "docker", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:2:" in result.output and "malformed Docker seccomp JSON" in result.output


def test_import_then_diff_against_itself(tmp_path: Path) -> None:
    src = tmp_path / "p.json"
    src.write_text('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write",'
                   '"exit_group","nosuch"],"action":"SCMP_ACT_ALLOW"}]}')
    out = tmp_path / "p.toml"
    result = CliRunner().invoke(cli, ["import", "docker", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "unknown syscall 'nosuch'" in result.output  # warning on stderr (mixed here)
    same = CliRunner().invoke(cli, ["diff", str(out), str(out)])
    assert same.exit_code == 0 and "same decisions" in same.output
    other = CliRunner().invoke(cli, ["diff", str(out), "strict"])
    assert other.exit_code == 1 and other.output


def test_diff_reads_docker_json_and_its_round_trip_is_the_same(tmp_path: Path) -> None:
    src = tmp_path / "old.json"
    src.write_text('{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write",'
                   '"exit_group","execve","openat"],"action":"SCMP_ACT_ALLOW"}]}')
    toml = tmp_path / "old.toml"
    assert CliRunner().invoke(cli, ["import", "docker", str(src), "-o", str(toml)]).exit_code == 0
    back = tmp_path / "back.json"
    result = CliRunner().invoke(cli, ["export", "docker", str(toml), "-o", str(back)])
    assert result.exit_code == 0, result.output
    same = CliRunner().invoke(cli, ["diff", str(src), str(back)])
    assert (same.exit_code, same.stdout) == (0, "same decisions for every syscall\n")


def test_learn_refuses_an_unknown_runtime(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["learn", "--docker", str(tmp_path / "x.json"),
                                      "--runtime", "runc-9", "--", "true"])
    assert result.exit_code == 2
    assert "unknown runtime 'runc-9'; known: all, none, runc-1.1" in result.output


def test_export_of_a_minimal_profile_warns_about_the_runtime_and_adds_it(tmp_path: Path) -> None:
    prof = tmp_path / "min.toml"
    prof.write_text('[seccomp]\nallow = ["execve", "exit_group", "read", "write"]\n')
    bare = CliRunner().invoke(cli, ["export", "docker", str(prof)])
    assert bare.exit_code == 0, bare.output
    assert "which runc 1.1 calls after loading it: a container will not start" in bare.stderr
    assert "setuid" in bare.stderr
    full = CliRunner().invoke(cli, ["export", "k8s", str(prof), "--runtime", "runc-1.1"])
    assert full.exit_code == 0, full.output
    assert "runc 1.1 calls" not in full.stderr
    assert "    - setuid\n" in full.stdout or '    - "setuid"\n' in full.stdout
