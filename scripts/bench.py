"""isorun launch benchmarks against bubblewrap, firejail and unshare, in one run.

Measures, on this machine, the launch of ``/bin/true`` under the built-in ``strict``
profile (or the closest flags each peer has):

- CLI launches with hyperfine (``-N``, no shell): isorun with a cold and a warm plan
  cache, bwrap (with and without the same seccomp BPF isorun loads), firejail,
  ``unshare -Urnpf --mount-proc``, bare exec and bare Python start-up as floors;
- from one warm Python process, interleaved: ``isorun.run`` vs bwrap through
  ``subprocess.run`` (fork/exec), and back-to-back launches per second (API, CLI, bwrap);
- ``isorun check strict`` and ``isorun explain strict`` through the Python CLI, without
  bytecode on disk (PYTHONDONTWRITEBYTECODE=1, __pycache__ removed) and with it;
- peak RSS (ru_maxrss) of each launcher's process tree;
- the seccomp engineer's ``bench_seccomp.py`` and the shim engineer's ``bench_launch.py``
  tables, when those scripts exist.

Writes ``docs/benchmarks.md`` and ``docs/benchmarks.svg``. Not a test: figures depend on
the machine and its load, so the report records both. Run: ``make bench`` or
``.venv/bin/python scripts/bench.py [--runs N] [--quick]``. ``--only marker`` measures
only the marker's per-test cost split into fork and sandbox, and replaces that section
of the existing ``docs/benchmarks.md`` (with its own date and load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
#: the `isorun` command: the C front end (a warm launch starts no Python)
ISORUN = str(VENV_BIN / "isorun")
#: the Python CLI it runs for everything else (and on a cache miss)
ISORUN_PY = str(VENV_BIN / "isorun-py")
DOCS = ROOT / "docs"


def _environment() -> dict[str, str]:
    # Bytecode must be on disk: an installed package has it, and without it every import
    # recompiles (this dev box sets PYTHONDONTWRITEBYTECODE=1, which would triple the
    # Python figures). The launchers also get no ISORUN_CACHE override.
    env = {k: v for k, v in os.environ.items() if k not in ("ISORUN_CACHE",)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _compile_bytecode() -> None:
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "isorun")],
        env=_environment(),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else "?"


def strict_bpf() -> bytes:
    """The BPF program isorun loads for ``strict`` (from its own cache/compiler)."""
    from isorun import api

    return api.cached_program(api._cached_plan("strict"))


def bwrap_argv(seccomp_fd: int | None) -> list[str]:
    """bwrap with the flags closest to ``strict``."""
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += ["--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64"):
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    cwd = os.getcwd()
    argv += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev"]
    argv += ["--tmpfs", "/tmp", "--tmpfs", "/run", "--ro-bind", cwd, cwd, "--chdir", cwd]
    argv += ["--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return [*argv, "/bin/true"]


FIREJAIL = [
    "firejail", "--quiet", "--noprofile", "--net=none", "--private-tmp", "--private-dev",
    "--caps.drop=all", "--nonewprivs", "--seccomp", "/bin/true",
]  # fmt: skip
UNSHARE = ["unshare", "-Urnpf", "--mount-proc", "/bin/true"]


def warm_launch_index(argv: list[str], env: dict[str, str]) -> None:
    """Launch until the front end's launch index exists, so the warm row measures hits.

    The Python CLI writes no index while a profile or source file is younger than 2 s
    (isorun.cache.index.index_blob: a stat fingerprint is only sound for a settled file), and
    a fresh build or checkout is exactly that; a front-end miss then rewrites it.
    """
    from isorun.cache import index as cache_index

    spec = argv[argv.index("--profile") + 1]
    directory = os.path.join(env["XDG_CACHE_HOME"], "isorun")
    backend = argv[argv.index("--backend") + 1] if "--backend" in argv else ""
    index = os.path.join(directory, cache_index.index_name(spec, os.getcwd(), os.getuid(),
                                                            backend))
    deadline = time.monotonic() + 30
    while True:
        subprocess.run(argv, env=env, check=True)
        if os.path.exists(index):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: no launch index at {index} after 30 s; is the tree "
                             "being edited? (isorun --verbose says why)")  # fmt: skip
        time.sleep(0.5)


#: Python CLI commands that start no sandbox, timed without bytecode on disk (cold: a
#: fresh image with PYTHONDONTWRITEBYTECODE=1 and no .pyc) and with it (warm: what an
#: installation carries); issue #17 item 8
PY_COMMANDS = (("check", "strict"), ("explain", "strict"))


#: (row name, argv, environment, hyperfine --prepare)
PyCase = tuple[str, list[str], dict[str, str], str | None]


def py_command_cases(env: dict[str, str]) -> list[PyCase]:
    """(row name, argv, environment, hyperfine --prepare) of each PY_COMMANDS run, cold
    and warm. The cold prepare removes the package's __pycache__ directories before each
    run, and PYTHONDONTWRITEBYTECODE keeps the run from writing them back."""
    package = ROOT / "src" / "isorun"
    drop = shlex.join(["find", str(package), "-name", "__pycache__", "-prune", "-exec",
                       "rm", "-rf", "{}", "+"])  # fmt: skip
    cases = []
    for words in PY_COMMANDS:
        argv = [ISORUN_PY, *words]
        label = "isorun " + " ".join(words)
        cases.append((f"{label}, no bytecode", argv,
                      {**env, "PYTHONDONTWRITEBYTECODE": "1"}, drop))  # fmt: skip
        cases.append((f"{label}, with bytecode", argv, env, None))
    return cases


def py_commands(runs: int, env: dict[str, str]) -> dict[str, dict[str, float]]:
    """Hyperfine figures of py_command_cases; the bytecode is written again afterwards."""
    rows = {}
    try:
        for name, argv, case_env, prepare in py_command_cases(env):
            if prepare is None:
                _compile_bytecode()  # a cold case before removed it
            rows[name] = hyperfine(name, argv, runs, case_env, prepare=prepare)
    finally:
        _compile_bytecode()
    return rows


def hyperfine(
    name: str, argv: list[str], runs: int, env: dict[str, str], prepare: str | None = None
) -> dict[str, float]:
    """Median, spread and mean (ms) of ``argv`` run by hyperfine without a shell."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = ["hyperfine", "-N", "--style", "none", "--warmup", "3", "--runs", str(runs)]
        cmd += ["--export-json", out.name, "--command-name", name]
        if prepare:
            cmd += ["--prepare", prepare]
        subprocess.run([*cmd, shlex.join(argv)], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        result = json.loads(Path(out.name).read_text())["results"][0]
    times = [t * 1000 for t in result["times"]]
    return _stats(times)


def _stats(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=10)
    return {
        "median": statistics.median(times),
        "p10": q[0],
        "p90": q[-1],
        "mean": statistics.fmean(times),
        "stdev": statistics.stdev(times) if len(times) > 1 else 0.0,
        "runs": float(len(times)),
    }


def rss_kib(argv: list[str], env: dict[str, str]) -> int:
    """Peak RSS (KiB) of a launcher's process tree, as GNU time reports it.

    Not wait4 from here: a child forked or vforked from this Python inherits its memory
    high-water mark at execve, so every launcher would report Python's size.
    """
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], env=env, capture_output=True,
                         text=True)  # fmt: skip
    return int(out.stderr.strip().splitlines()[-1])


def api_rss_kib(env: dict[str, str]) -> int:
    code = (
        "import resource\nfrom isorun.api import run\n"
        "run(['/bin/true'], profile='strict', check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return int(out.stdout.strip())


def in_process(runs: int, bpf_path: str) -> dict[str, dict[str, float]]:
    """isorun.run vs bwrap from this (warm) process, interleaved so load hits both alike."""
    from isorun import run

    fd = os.open(bpf_path, os.O_RDONLY)
    argv = bwrap_argv(fd)

    def api() -> None:
        run(["/bin/true"], profile="strict", check=True)

    def bwrap() -> None:
        os.lseek(fd, 0, os.SEEK_SET)  # bwrap reads the program from the shared offset
        subprocess.run(argv, pass_fds=(fd,), check=True)

    def cli() -> None:
        subprocess.run([ISORUN, "--profile", "strict", "--", "/bin/true"], check=True)

    for f in (api, bwrap, cli):
        f()
    samples: dict[str, list[float]] = {"api": [], "bwrap": []}
    for _ in range(runs):
        for name, f in (("api", api), ("bwrap", bwrap)):
            start = time.perf_counter()
            f()
            samples[name].append((time.perf_counter() - start) * 1000)
    stats = {name: _stats(times) for name, times in samples.items()}
    for name, f, count in (("api", api, runs), ("bwrap", bwrap, runs), ("cli", cli, runs // 2)):
        start = time.perf_counter()
        for _ in range(count):
            f()
        stats.setdefault(f"{name}_rate", {})["per_s"] = count / (time.perf_counter() - start)
    os.close(fd)
    return stats


def peer_table(script: str, args: list[str], env: dict[str, str]) -> str:
    path = ROOT / "scripts" / script
    if not path.exists():
        return ""
    out = subprocess.run(
        [sys.executable, str(path), *args], env=env, capture_output=True, text=True, timeout=900
    )
    if out.returncode != 0:
        return f"(`{script}` failed: {out.stderr.strip().splitlines()[-1:]})"
    return out.stdout.strip()


def svg_chart(rows: list[tuple[str, float, float, float]], title: str) -> str:
    """A horizontal bar chart: (label, median, p10, p90) in ms, with p10-p90 whiskers."""
    width, left, bar, gap, top = 760, 250, 22, 10, 40
    top_value = max(p90 for _, _, _, p90 in rows) * 1.1
    scale = (width - left - 60) / top_value
    height = top + len(rows) * (bar + gap) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
    ]
    for i, (label, median, p10, p90) in enumerate(rows):
        y = top + i * (bar + gap)
        colour = "#2b6cb0" if label.startswith("isorun") else "#a0aec0"
        out += [
            f'<text x="{left - 8}" y="{y + bar * 0.7}" text-anchor="end">{label}</text>',
            f'<rect x="{left}" y="{y}" width="{median * scale:.1f}" height="{bar}" '
            f'fill="{colour}"/>',
            f'<line x1="{left + p10 * scale:.1f}" x2="{left + p90 * scale:.1f}" '
            f'y1="{y + bar / 2}" y2="{y + bar / 2}" stroke="black"/>',
            f'<text x="{left + max(median, p90) * scale + 6:.1f}" y="{y + bar * 0.7}">'
            f"{median:.1f} ms</text>",
        ]
    axis_y = top + len(rows) * (bar + gap) + 5
    out.append(
        f'<text x="{left}" y="{axis_y + 15}" fill="#555">median launch time of /bin/true, '
        f"ms (whiskers: p10-p90)</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60, help="runs per CLI measurement")
    parser.add_argument("--quick", action="store_true", help="fewer runs, no peer tables")
    parser.add_argument("--only", choices=["marker"],
                        help="measure only this part and update its section of the report")
    args = parser.parse_args()
    runs = 15 if args.quick else args.runs
    env = _environment()
    _compile_bytecode()
    if args.only == "marker":
        section = marker_split(3 if args.quick else 5)
        DOCS.mkdir(exist_ok=True)
        path = DOCS / "benchmarks.md"
        path.write_text(splice_section(path.read_text() if path.exists() else "", section))
        print(section)
        return 0
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="isorun-bench-"))
    cold_dir, warm_dir = workdir / "cold", workdir / "warm"
    bpf_path = workdir / "strict.bpf"
    bpf_path.write_bytes(strict_bpf())
    isorun_argv = [ISORUN, "--profile", "strict", "--", "/bin/true"]
    cold_env = {**env, "XDG_CACHE_HOME": str(cold_dir)}
    warm_env = {**env, "XDG_CACHE_HOME": str(warm_dir)}
    warm_launch_index(isorun_argv, warm_env)
    bwrap_seccomp = ["sh", "-c", f'exec {shlex.join(bwrap_argv(9))} 9<"$0"',
                     str(bpf_path)]  # fmt: skip

    cli: dict[str, dict[str, float]] = {}
    cli["isorun CLI, cold cache"] = hyperfine(
        "cold", isorun_argv, max(10, runs // 3), cold_env, prepare=f"rm -rf {cold_dir}"
    )
    cli["isorun CLI, warm cache"] = hyperfine("warm", isorun_argv, runs, warm_env)
    # The same launch through the Python CLI (isorun-py, what a front-end miss runs).
    cli["isorun-py (Python CLI), warm cache"] = hyperfine(
        "warm-py", [ISORUN_PY, *isorun_argv[1:]], runs, warm_env
    )
    # The same plan through the fallback backend (issue #5), beside the bare tool below.
    # firejail is not measured under strict: it refuses the plan (no empty root, no
    # cgroup namespace), which is the fail-closed answer, not a launch.
    via_bwrap = [ISORUN, "--backend", "bwrap", "--profile", "strict", "--", "/bin/true"]
    cli["isorun --backend bwrap, warm cache"] = hyperfine("via-bwrap", via_bwrap, runs,
                                                          warm_env)
    # The Landlock layer (issue #18): strict without it, to price the layer, and the
    # landlock backend, which runs where no user namespace can be made (here by choice).
    plain = workdir / "no-landlock.toml"
    plain.write_text('extends = ["strict"]\n\n[landlock]\nenabled = false\n')
    no_layer = [ISORUN, "--profile", str(plain), "--", "/bin/true"]
    warm_launch_index(no_layer, warm_env)
    cli["isorun strict without the Landlock layer, warm cache"] = hyperfine(
        "no-landlock", no_layer, runs, warm_env)
    via_landlock = [ISORUN, "--backend", "landlock", "--allow-weaker", "--profile", "strict",
                    "--", "/bin/true"]
    warm_launch_index(via_landlock, warm_env)
    cli["isorun --backend landlock (no user namespace), warm cache"] = hyperfine(
        "via-landlock", via_landlock, runs, warm_env)
    cli["bwrap"] = hyperfine("bwrap", bwrap_argv(None), runs, env)
    cli["bwrap + seccomp (via sh)"] = hyperfine("bwrap-seccomp", bwrap_seccomp, runs, env)
    cli["sh -c exec (overhead of the line above)"] = hyperfine(
        "sh", ["sh", "-c", "exec /bin/true"], runs, env
    )
    if shutil.which("firejail"):
        cli["firejail"] = hyperfine("firejail", FIREJAIL, runs, env)
    cli["unshare -Urnpf --mount-proc"] = hyperfine("unshare", UNSHARE, runs, env)
    cli["bare exec /bin/true"] = hyperfine("true", ["/bin/true"], runs, env)
    cli["python -c pass (venv, site)"] = hyperfine(
        "python", [sys.executable, "-c", "pass"], runs, env
    )
    commands = py_commands(max(10, runs // 3), warm_env)

    inproc = in_process(max(50, runs * 2), str(bpf_path))
    warm_launch_index(isorun_argv, warm_env)  # again: a source file edited meanwhile
    rss = {
        "isorun CLI, warm cache": rss_kib(isorun_argv, warm_env),
        "isorun CLI, cold cache": rss_kib(isorun_argv, {**env, "XDG_CACHE_HOME": str(workdir)}),
        "isorun API process (python + isorun.run)": api_rss_kib(warm_env),
        "bwrap": rss_kib(bwrap_argv(None), env),
        "firejail": rss_kib(FIREJAIL, env) if shutil.which("firejail") else 0,
        "unshare": rss_kib(UNSHARE, env),
    }
    seccomp_table = "" if args.quick else peer_table("bench_seccomp.py", [], env)
    launch_table = "" if args.quick else peer_table("bench_launch.py", ["-n", "100"], env)
    suites = test_suites(3 if args.quick else 5)
    split = marker_split(3 if args.quick else 5)
    load_after = os.getloadavg()
    shutil.rmtree(workdir, ignore_errors=True)

    report = render(cli, inproc, rss, seccomp_table, launch_table, suites, load_before,
                    load_after, commands)  # fmt: skip
    report = splice_section(report, split)
    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmarks.md").write_text(report)
    rows = [
        (name, s["median"], s["p10"], s["p90"])
        for name, s in cli.items()
        if not name.startswith(("sh -c", "python"))
    ]
    rows.insert(3, ("isorun.run (API, warm process)", *_mp(inproc["api"])))
    rows.insert(5, ("bwrap via subprocess.run", *_mp(inproc["bwrap"])))
    (DOCS / "benchmarks.svg").write_text(svg_chart(rows, "Launching /bin/true under strict"))
    print(report)
    return 0


def _mp(s: dict[str, float]) -> tuple[float, float, float]:
    return s["median"], s["p10"], s["p90"]


def render(
    cli: dict[str, dict[str, float]],
    inproc: dict[str, dict[str, float]],
    rss: dict[str, int],
    seccomp_table: str,
    launch_table: str,
    suites: tuple[str, dict[str, float]],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    commands: dict[str, dict[str, float]] | None = None,
) -> str:
    bwrap = cli["bwrap"]["median"]
    firejail = cli.get("firejail", {}).get("median", float("nan"))
    warm = cli["isorun CLI, warm cache"]["median"]
    cold = cli["isorun CLI, cold cache"]["median"]
    api, api_bwrap = inproc["api"]["median"], inproc["bwrap"]["median"]
    rate_api, rate_bwrap = inproc["api_rate"]["per_s"], inproc["bwrap_rate"]["per_s"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`scripts/bench.py`); do not edit by hand. Launch of",
        "`/bin/true` under the built-in `strict` profile, or the closest flags of each peer.",
        "",
        f"- machine: {platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}"
        f" {platform.machine()}, Python {platform.python_version()}",
        f"- {_version(['hyperfine', '--version'])}, {_version(['bwrap', '--version'])},"
        f" {_version(['firejail', '--version'])}",
        f"- load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} (other work"
        " on the machine widens the spread; compare ratios from the same run)",
        f"- run as uid {os.getuid()}; {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        "## Goals",
        "",
        "| goal | target | reached | |",
        "|---|---:|---:|---|",
        _goal("API launch / bwrap from the same process", api / api_bwrap, "<= 0.80", 0.8),
        _goal("CLI warm / bwrap CLI", warm / bwrap, "<= 3.00", 3.0),
        _goal("CLI warm / firejail", warm / firejail, "<= 0.60", 0.6),
        _goal(
            "API launches/s / bwrap launches/s",
            rate_bwrap / rate_api,
            ">= 1.25",
            0.8,
            shown=rate_api / rate_bwrap,
        ),
        _goal("CLI cold cache (compile + launch), ms", cold, "< 250", 250.0),
        *_suite_goals(suites[1]),
        "",
        "## CLI launches (hyperfine -N, no shell)",
        "",
        "| launcher | median ms | p10 ms | p90 ms | mean ± sd ms | runs | x bwrap |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in cli.items():
        lines.append(
            f"| {name} | {s['median']:.2f} | {s['p10']:.2f} | {s['p90']:.2f} |"
            f" {s['mean']:.2f} ± {s['stdev']:.2f} | {int(s['runs'])} | {s['median'] / bwrap:.2f} |"
        )
    if commands:
        lines += [
            "",
            "## Python CLI commands (no sandbox), without and with bytecode on disk",
            "",
            "| command | median ms | p10 ms | p90 ms | mean ± sd ms | runs |",
            "|---|---:|---:|---:|---:|---:|",
            *(f"| {name} | {s['median']:.2f} | {s['p10']:.2f} | {s['p90']:.2f} |"
              f" {s['mean']:.2f} ± {s['stdev']:.2f} | {int(s['runs'])} |"
              for name, s in commands.items()),
        ]
    lines += [
        "",
        "## From one warm Python process (interleaved)",
        "",
        "| launcher | median ms | p10 ms | p90 ms | runs | back-to-back launches/s |",
        "|---|---:|---:|---:|---:|---:|",
        f"| `isorun.run(['/bin/true'], profile='strict')` | {api:.2f} |"
        f" {inproc['api']['p10']:.2f} | {inproc['api']['p90']:.2f} |"
        f" {int(inproc['api']['runs'])} | {rate_api:.0f} |",
        f"| bwrap + seccomp via `subprocess.run` | {api_bwrap:.2f} |"
        f" {inproc['bwrap']['p10']:.2f} | {inproc['bwrap']['p90']:.2f} |"
        f" {int(inproc['bwrap']['runs'])} | {rate_bwrap:.0f} |",
        f"| isorun CLI (warm) via `subprocess.run` | | | | | {inproc['cli_rate']['per_s']:.0f} |",
        "",
        "## Peak memory of the launcher (ru_maxrss of its process tree)",
        "",
        "| launcher | peak RSS KiB |",
        "|---|---:|",
        *(f"| {name} | {kib} |" for name, kib in rss.items()),
        "",
        "## Commands",
        "",
        f"- isorun: `{shlex.join([ISORUN, '--profile', 'strict', '--', '/bin/true'])}`"
        " with `XDG_CACHE_HOME` pointing to an emptied (cold) or filled (warm) directory;"
        " `isorun` is the C front end (a warm launch starts no Python), `isorun-py` the"
        " Python CLI it runs on a miss",
        f"- bwrap: `{shlex.join(bwrap_argv(9))}` (seccomp fd 9: the BPF isorun"
        " loads for strict; the CLI row without `--seccomp`)",
        f"- firejail: `{shlex.join(FIREJAIL)}`",
        f"- unshare: `{shlex.join(UNSHARE)}`",
        "",
        "![launch times](benchmarks.svg)",
        "",
    ]
    if suites[0]:
        lines += ["## Test suites (`scripts/bench_pytest.py`)", "", SUITES_NOTE, "",
                  suites[0], ""]  # fmt: skip
    if seccomp_table:
        lines += ["## Seccomp filter cost (`scripts/bench_seccomp.py`)", "", seccomp_table, ""]
    if launch_table:
        lines += ["## Raw spawn() vs bwrap (`scripts/bench_launch.py`)", "", launch_table, ""]
    return "\n".join(lines)


SUITES_NOTE = (
    "Wall time of this project's `tests/unit` bare and under `pytest --isorun` (the"
    " session re-executed in the `test` profile), and of a module of 200 trivial tests"
    " with and without `@pytest.mark.isorun`; each figure is the best of interleaved runs"
    " (docs/testing.md explains the method and where the time goes)."
)


def test_suites(runs: int) -> tuple[str, dict[str, float]]:
    """bench_pytest's table and the figures of its goals (issue #6)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench_pytest
    finally:
        sys.path.pop(0)
    figures: dict[str, float] = {}
    rows = bench_pytest.measure("tests/unit", runs, 200, "session,marker", figures)
    return bench_pytest.markdown(rows).strip(), figures


#: the heading of the marker's fork/sandbox section, which ``--only marker`` replaces
SPLIT_HEADING = "## The marker's cost per test: fork and sandbox"

SPLIT_NOTE = (
    "A module of 200 trivial tests, every test marked, minus the same unmarked (beyond a"
    " 1-test module), per test; in a small pytest process and in a large one (a conftest"
    " importing a few dozen standard modules and keeping ~100 MB of objects, as a real"
    " suite's session does). The fork alone is a plugin that does what the marker does"
    " minus the sandbox: the same clone3 into Python without namespace flags, the body in"
    " the child, a one-byte result, the child reaped before the next test. Sandbox ="
    " marked - fork. Best of interleaved runs (`scripts/bench_pytest.py --parts split`);"
    " wall time, and CPU time (user + system) of pytest's process tree, which the load"
    " inflates less. Kernel work done by other threads (the network namespace's teardown"
    " runs in a kernel worker) is in neither CPU figure."
)


def marker_split(runs: int) -> str:
    """The section of the marker's per-test cost split into fork and sandbox."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench_pytest
    finally:
        sys.path.pop(0)
    before = os.getloadavg()
    rows = bench_pytest.measure("", runs, 200, "split")
    after = os.getloadavg()
    return "\n".join([
        SPLIT_HEADING, "", SPLIT_NOTE, "",
        f"- run as uid {os.getuid()}, {time.strftime('%Y-%m-%d %H:%M %Z')}, load average"
        f" before/after: {before[0]:.2f} / {after[0]:.2f} ({os.cpu_count()} CPUs)", "",
        bench_pytest.markdown(rows).strip(), "",
    ])  # fmt: skip


def splice_section(report: str, section: str) -> str:
    """``report`` with its SPLIT_HEADING section replaced by ``section`` (or, when it
    has none, ``section`` inserted before the peer tables or at the end)."""
    lines = report.splitlines()
    if SPLIT_HEADING in lines:
        start = lines.index(SPLIT_HEADING)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))  # fmt: skip
    else:
        start = end = next((i for i, line in enumerate(lines)
                            if line.startswith("## Seccomp filter cost")), len(lines))  # fmt: skip
    return "\n".join([*lines[:start], *section.splitlines(), "", *lines[end:]]).rstrip() + "\n"


def _suite_goals(figures: dict[str, float]) -> list[str]:
    rows = []
    if "session_overhead_pct" in figures:
        rows.append(_goal("`pytest --isorun` beyond its one-time launch, % of bare",
                          figures["session_overhead_pct"], "< 5", 5.0))  # fmt: skip
    if "marker_ms_per_test" in figures:
        rows.append(_goal("`@pytest.mark.isorun` per test, ms", figures["marker_ms_per_test"],
                          "< 10", 10.0))  # fmt: skip
    return rows


def _goal(what: str, value: float, target: str, limit: float, shown: float | None = None) -> str:
    met = value <= limit
    reached = value if shown is None else shown
    return f"| {what} | {target} | {reached:.2f} | {'met' if met else 'NOT met'} |"


if __name__ == "__main__":
    sys.exit(main())
