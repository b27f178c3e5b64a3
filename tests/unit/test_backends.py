"""Backend selection fails closed, and every step type is enforced by some backend."""

from __future__ import annotations

import typing
from dataclasses import replace

import pytest

from isorun import api
from isorun.compile import plan as p
from isorun.compile.render.bwrap import render_bwrap
from isorun.compile.render.firejail import render_firejail
from isorun.compile.render.invocation import Invocation
from isorun.errors import HostError, Unsupported
from isorun.host.facts import HostFacts
from isorun.host.probe import BackendFacts, Tool, UsernsState
from isorun.sandbox.backends import BACKENDS, ORDER, SAMPLES, capability_matrix, sample_plan
from isorun.sandbox.backends import select_backend as select
from tests.golden.backends.harness import VARIABLES

USER = HostFacts(uid=1000, gid=1000, arch="x86_64", kernel="6.1")
BWRAP = Tool("/usr/bin/bwrap", "0.8.0", setuid=False)
FIREJAIL = Tool("/usr/bin/firejail", "0.9.72", setuid=True)
USERNS_OFF = UsernsState(False, "user.max_user_namespaces=0",
                         "sysctl -w user.max_user_namespaces=15000")


def facts(**kw: object) -> BackendFacts:
    base: dict[str, object] = {"host": USER, "userns": UsernsState(True), "bwrap": BWRAP,
                               "firejail": FIREJAIL}
    base.update(kw)
    return BackendFacts(**base)  # type: ignore[arg-type]


def plan_of(profile: str = "strict") -> p.Plan:
    return api.compile_plan(api.load_profile(profile), USER, VARIABLES)


def test_every_step_type_has_a_sample() -> None:
    types = set(typing.get_args(p.Step))
    assert {type(step) for _, step in SAMPLES} == types


def test_every_step_aspect_is_enforced_by_some_backend() -> None:
    matrix = capability_matrix()
    covered = set().union(*matrix.values())
    assert covered == {aspect for aspect, _ in SAMPLES}
    # and by a wrapper too, except what only the native shim can do
    wrappers = matrix["bwrap"] | matrix["firejail"]
    # (an overlay: bwrap's --tmp-overlay has no size for the changes, firejail none at
    # all; Landlock is applied by isorun's exec stage inside both, issue 18)
    assert {aspect for aspect, _ in SAMPLES} - wrappers == {
        "Cgroup", "Clone:time", "MountStep:overlay"}
    assert {"Landlock:tcp", "Landlock:scope signal"} <= matrix["bwrap"] & matrix["firejail"]


@pytest.mark.parametrize(("aspect", "step"), SAMPLES, ids=[a for a, _ in SAMPLES])
def test_each_renderer_renders_or_refuses_every_step(aspect: str, step: p.Step) -> None:
    plan = sample_plan(step)

    def bwrap() -> Invocation:
        return render_bwrap(plan, ["cmd"], {}, seccomp_fd=3, file_fds=(4,))

    def firejail() -> Invocation:
        return render_firejail(plan, ["cmd"], {}, seccomp_fd=3, env_fd=4, helper_fd=5)

    for render in (bwrap, firejail):
        try:
            inv = render()
        except Unsupported as err:
            assert err.lost and all(item.why for item in err.lost)
        else:
            assert inv.argv[-2:] == ("--", "cmd") and inv.lost == ()


def test_capability_matrix_facts() -> None:
    matrix = capability_matrix()
    assert matrix["native"] == {aspect for aspect, _ in SAMPLES}
    assert "MountStep:noexec" not in matrix["bwrap"]
    assert "NewRoot:tmpfs" in matrix["bwrap"] and "NewRoot:tmpfs" not in matrix["firejail"]
    assert "DieWithParent" not in matrix["firejail"]
    assert "LoadSeccomp" in matrix["firejail"]


def test_auto_takes_native_when_it_can() -> None:
    said: list[str] = []
    backend, lost = select(plan_of(), "auto", facts(), False, log=said.append)
    assert (backend.name, lost) == ("native", [])
    assert said == ["isorun: backend native: enforces every rule of strict "
                    "(the strongest usable here)"]


def test_auto_falls_back_to_bwrap_and_says_why() -> None:
    said: list[str] = []
    backend, lost = select(plan_of(), "auto", facts(native_missing="shim not built"), False,
                           log=said.append)
    assert (backend.name, lost) == ("bwrap", [])
    assert said[0] == "isorun: backend native: not usable here: shim not built"


def test_named_backend_is_refused_not_swapped() -> None:
    with pytest.raises(Unsupported) as info:
        select(plan_of(), "firejail", facts(), False)
    err = info.value
    assert err.backend == "firejail"
    root = next(item for item in err.lost if item.rule.startswith("new root: empty tmpfs"))
    assert root.alternatives == ("native", "bwrap")
    assert root.loc.short().endswith("strict.toml:17")
    text = err.render()
    assert "backend 'firejail' cannot enforce this profile" in text
    assert "(enforced by: native, bwrap)" in text
    assert "--allow-weaker" in text


def test_allow_weaker_returns_what_is_lost() -> None:
    backend, lost = select(plan_of(), "firejail", facts(), True)
    assert backend.name == "firejail"
    assert "die with parent (PR_SET_PDEATHSIG SIGKILL)" in {item.rule for item in lost}


def test_auto_refuses_when_only_weaker_backends_remain() -> None:
    # native and bwrap both gone: firejail is usable but would lose rules
    with pytest.raises(Unsupported) as info:
        select(plan_of(), "auto", facts(native_missing="no shim", bwrap=None), False)
    assert info.value.backend == "firejail"
    alternatives = info.value.lost[0].alternatives
    assert alternatives[0].startswith("native, not usable here: no shim")


def test_time_namespace_names_native_only() -> None:
    plan = p.Plan("t", (p.Clone(("user", "time")), p.MapIds(1000, 1000, 1000, 1000),
                        p.Exec()))
    with pytest.raises(Unsupported) as info:
        select(plan, "bwrap", facts(), False)
    assert info.value.lost[0].alternatives == ("native",)


def test_nothing_usable_is_a_host_error_with_a_fix() -> None:
    with pytest.raises(HostError) as info:
        select(plan_of(), "auto", facts(native_missing="no shim", bwrap=None, firejail=None),
               False)
    assert "no backend can run here" in info.value.render()
    assert "hint:" in info.value.render()


def test_named_missing_backend_says_how_to_install() -> None:
    with pytest.raises(HostError) as info:
        select(plan_of(), "bwrap", facts(bwrap=None), False)
    assert info.value.fix == "apt-get install bubblewrap"


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(HostError, match="unknown backend"):
        select(plan_of(), "docker", facts(), False)


def test_userns_off_falls_back_to_setuid_bwrap_and_says_why() -> None:
    said: list[str] = []
    setuid_bwrap = Tool("/usr/bin/bwrap", "0.8.0", setuid=True)
    backend, lost = select(plan_of(), "auto", facts(userns=USERNS_OFF, bwrap=setuid_bwrap),
                           False, log=said.append)
    assert (backend.name, lost) == ("bwrap", [])
    assert said[0] == ("isorun: backend native: not usable here: user namespaces are "
                       "disabled (user.max_user_namespaces=0)")


def test_userns_off_without_setuid_wrappers_is_a_host_error() -> None:
    no_landlock = replace(USER, landlock=0)
    with pytest.raises(HostError) as info:
        select(plan_of(), "auto", facts(host=no_landlock, userns=USERNS_OFF, firejail=None),
               False)
    assert info.value.fix == "sysctl -w user.max_user_namespaces=15000"


def test_userns_off_falls_to_landlock_mode_and_names_each_rule_it_loses() -> None:
    with pytest.raises(Unsupported) as info:
        select(plan_of(), "auto", facts(userns=USERNS_OFF, firejail=None), False)
    assert info.value.backend == "landlock"
    rules = [item.rule for item in info.value.lost]
    assert {"pid namespace", "net namespace", "ipc namespace", "uts namespace"} <= set(rules)
    assert any(rule.startswith("new root: empty tmpfs") for rule in rules), rules
    backend, lost = select(plan_of(), "auto", facts(userns=USERNS_OFF, firejail=None), True)
    assert backend.name == "landlock" and [i.rule for i in lost] == rules


def test_userns_off_keeps_only_identity_maps() -> None:
    other = p.Plan("t", (p.Clone(("user",)), p.MapIds(0, 0, 1000, 1000), p.Exec()))
    setuid_bwrap = Tool("/usr/bin/bwrap", "0.8.0", setuid=True)
    with pytest.raises(Unsupported) as info:
        select(other, "bwrap", facts(userns=USERNS_OFF, bwrap=setuid_bwrap), False)
    assert info.value.lost[0].rule == "user namespace"


def test_wrapper_cannot_become_another_uid_unless_root() -> None:
    plan = p.Plan("t", (p.Clone(("user",)), p.MapIds(1, 1, 2000, 2000), p.Exec()))
    with pytest.raises(HostError, match="maps the uid that runs it"):
        select(plan, "bwrap", facts(), False)


def test_firejail_refuses_nobody() -> None:
    root = HostFacts(uid=0, gid=0, arch="x86_64", kernel="6.1")
    plan = api.compile_plan(api.load_profile("strict"), root, VARIABLES)
    with pytest.raises(HostError, match="nobody"):
        select(plan, "firejail", facts(host=root), False)


def test_order_is_strongest_first() -> None:
    assert ORDER == ("native", "bwrap", "firejail", "landlock")
    assert set(BACKENDS) == set(ORDER)


def test_weaker_run_warning_names_each_lost_rule() -> None:
    from isorun.sandbox.backends import describe_lost

    _, lost = select(plan_of(), "firejail", facts(), True)
    text = describe_lost("firejail", lost)
    assert text.startswith("isorun: warning: backend firejail runs this profile WITHOUT:")
    assert "strict.toml:17: new root: empty tmpfs (size 8m, 2048 inodes):" in text
    assert len(text.splitlines()) == len(lost) + 1


def test_wrapper_version_is_read_once_per_binary(tmp_path: typing.Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An API caller in a loop does not pay a ``--version`` subprocess per wrapper per
    launch (issue 18), yet a replaced binary is read again."""
    from isorun.host import probe

    calls = tmp_path / "calls"
    tool = tmp_path / "bwrap"
    tool.write_text(f"#!/bin/sh\necho x >> {calls}\necho bubblewrap 0.8.0\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    first = probe.find_tool("bwrap")
    again = probe.find_tool("bwrap")
    assert first == again and first is not None and first.version == "0.8.0"
    assert calls.read_text().count("x") == 1
    replacement = tmp_path / "new"
    replacement.write_text(f"#!/bin/sh\necho x >> {calls}\necho bubblewrap 0.9.0\n")
    replacement.chmod(0o755)
    replacement.replace(tool)
    upgraded = probe.find_tool("bwrap")
    assert upgraded is not None and upgraded.version == "0.9.0"
    assert calls.read_text().count("x") == 2
