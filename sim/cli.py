"""Command line: `servesim run|check|report|fit|validate|sweep|plan|compare`.

Exit 0 ok, 2 bad input (one clear message), 1 internal error; validate exits 3 when its error bound is exceeded."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from .errors import ScenarioError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # exit 2 with one line, like every other input error
        self.exit(2, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="servesim", description="Simulate batched model serving from a scenario YAML file.")
    p.add_argument("--version", action="version", version=f"servesim {__version__}",
                   help="print the version (servesim X.Y.Z) and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser,
                           help="run 'servesim COMMAND --help' for a command's options")

    r = sub.add_parser("run", help="simulate a scenario; write summary.json, requests.parquet and plots")
    r.add_argument("scenario", help="scenario YAML file")
    r.add_argument("--out", required=True, help="output folder (created if missing)")
    r.add_argument("--seed", type=int, help="override the scenario's seed")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a dotted key, e.g. server.batching.max_batch_size=64 (repeatable)")
    r.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    r.add_argument("--no-records", action="store_true", help="skip requests.parquet")
    r.add_argument("--quiet", action="store_true", help="print nothing on success")

    c = sub.add_parser("check", help="validate a scenario and print its resolved configuration")
    c.add_argument("scenario", help="scenario YAML file")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a dotted key, e.g. server.batching.max_batch_size=64 (repeatable)")

    rep = sub.add_parser("report", help="print the table of a finished run folder")
    rep.add_argument("dir", help="output folder of `servesim run` (holds summary.json)")

    v = sub.add_parser("validate", help="serve the scenario's trace for real (profiled model) and compare with the prediction")
    v.add_argument("scenario", help="scenario YAML whose cost_model is a measured profile")
    v.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (must match the profile's device)")
    v.add_argument("--out", required=True, help="output folder")
    v.add_argument("--loads", default="0.2,0.5,0.8", help="fractions of the policy's capacity (default 0.2,0.5,0.8)")
    v.add_argument("--max-error-pct", type=float, default=None,
                   help="exit 3 when |error| of p50, p99 latency or throughput exceeds this at any load")
    v.add_argument("--requests", type=int, default=None, help="requests per load (default: the scenario's run length)")
    v.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a dotted key, e.g. server.batching.max_batch_size=64 (repeatable)")
    v.add_argument("--reprofile", action="store_true",
                   help="re-measure the step times in this process first and predict from that fresh profile "
                        "(separates the simulator's error from device drift since the profile was made)")
    v.add_argument("--quiet", action="store_true", help="print no progress lines while validating")

    sw = sub.add_parser("sweep", help="run every combination of grid values; resumable (points stored as they finish)")
    sw.add_argument("scenario", help="scenario YAML file")
    _grid_flags(sw)
    sw.add_argument("--out", required=True, help="output folder: points/, sweep.parquet, timings.parquet, sweep.json, "
                    "report.html")

    pl = sub.add_parser("plan", help="per grid configuration, the largest rate that meets the SLO with 95%% "
                        "confidence, and its cost")
    pl.add_argument("scenario", help="scenario YAML file with an slo (and optionally plan: {target_rate_rps})")
    _grid_flags(pl)
    pl.add_argument("--out", required=True, help="output folder: plan.json, plan.parquet, report.html, points/")

    cp = sub.add_parser("compare", help="finished runs side by side, and their latency CDFs overlaid")
    cp.add_argument("dirs", nargs="+", metavar="DIR", help="output folders of `servesim run`")
    cp.add_argument("--plot", help="write the overlaid latency CDFs to this image (from each run's requests.parquet)")

    f = sub.add_parser("fit", help="re-fit measured profile(s) and compare the cost-model families")
    f.add_argument("profiles", nargs="+", metavar="PROFILE", help="profile YAML file(s) of one device, dtype and model")
    f.add_argument("--plot", help="write the measurements and fitted curves to this PNG")
    return p


def _grid_flags(p) -> None:
    p.add_argument("--grid", action="append", default=[], metavar="KEY=VALUES",
                   help="a grid axis: KEY=V1,V2,... or KEY=LO..HI:N or KEY=LO..HI:N:log (repeatable; KEY as for --set)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a dotted key for every point (repeatable)")
    ex = p.add_mutually_exclusive_group()
    ex.add_argument("--workers", type=int, default=None, help="local worker processes (default: every core)")
    ex.add_argument("--dask", metavar="ADDRESS", help="run points on this Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")


def _workers(args):
    if args.workers is not None and args.workers < 1:
        raise ScenarioError("--workers", "", f"got {args.workers}: give 1 or more")
    return args.workers


def cmd_sweep(args) -> int:
    from .sweeps.sweep import sweep
    from .sweeps.view import format_points

    if not args.grid:
        raise ScenarioError("--grid", "", "give at least one axis, e.g. --grid server.batching.max_batch_size=1,8,32")
    table = sweep(args.scenario, args.grid, args.out, args.overrides, _workers(args), args.dask, args.quiet)
    if not args.quiet:
        print(format_points(table, [g.partition("=")[0].strip() for g in args.grid]))
        print(f"  wrote {args.out}/: sweep.parquet timings.parquet sweep.json report.html points/ ({len(table)} points)")
    return 0


def cmd_plan(args) -> int:
    from .sweeps.plan import plan
    from .sweeps.view import format_plan

    result = plan(args.scenario, args.grid, args.out, args.overrides, _workers(args), args.dask, args.quiet)
    if not args.quiet:
        print(format_plan(result, [g.partition("=")[0].strip() for g in args.grid]))
        print(f"  wrote {args.out}/: plan.json plan.parquet report.html points/")
    return 0


def cmd_compare(args) -> int:
    from .compare import format_compare, load_runs, plot_compare
    from .fitreport import check_plot_path

    if args.plot:  # before reading anything: a bad path costs nothing
        try:
            check_plot_path(args.plot)
        except ValueError as exc:
            raise ScenarioError("--plot", "", str(exc)) from None
    runs = load_runs(args.dirs)
    print(format_compare(runs))
    if args.plot:
        written = plot_compare(args.dirs, Path(args.plot))
        print(f"  wrote {written}" if written else "  no run kept requests.parquet: nothing to plot")
    return 0


def _load(args):
    from .scenario import load_scenario

    overrides = list(args.overrides)
    if getattr(args, "seed", None) is not None:
        if args.seed < 0:
            raise ScenarioError("--seed", "", f"got {args.seed}: the seed must be an integer >= 0")
        overrides.append(f"seed={args.seed}")
    return load_scenario(args.scenario, overrides)


def cmd_run(args) -> int:
    from .outdir import OutputDir
    from .report import format_summary
    from .runner import output_names, run

    scenario = _load(args)
    records = scenario.outputs.records and not args.no_records
    plots = scenario.outputs.plots and not args.no_plots
    out = OutputDir(args.out)
    out.prepare(output_names(scenario, records, plots))  # before simulating: a bad --out costs nothing
    result = run(scenario, args.scenario)
    written = result.write(out, records=records, plots=plots)
    if not args.quiet:
        print(format_summary(result.summary))
        print(f"  wrote {out.path}/: " + " ".join(p.name for p in written))
    for w in result.summary["warnings"]:
        print(f"servesim: warning: {w}", file=sys.stderr)
    return 0


def cmd_check(args) -> int:
    from .kinds import engine_kind
    from .runner import check_runnable
    from .checks import scenario_warnings

    scenario = _load(args)
    check_runnable(scenario, args.scenario)  # the checks `run` makes before simulating
    print(f"{args.scenario}: OK")
    print(f"  batching: {scenario.batching_description()}")
    if scenario.streaming:
        print(f"  outputs: streaming (about {scenario._expected_requests:,.0f} requests: fixed-memory statistics, "
              "no requests.parquet or plots)")
    for line in engine_kind(scenario).check_lines(scenario):
        print(f"  {line}")
    for g in scenario.fleet_groups:
        price = "unknown" if g.cost_per_hour is None else f"${g.cost_per_hour:,.4g}/replica-hour"
        print(f"  group {g.name}: {g.replicas} replica(s), {price} ({g.price_note})")
    for w in scenario_warnings(scenario):
        print(f"servesim: warning: {w}", file=sys.stderr)
    print(json.dumps(scenario.model_dump(mode="json"), indent=2))
    return 0


def cmd_report(args) -> int:
    from .report import format_summary

    path = Path(args.dir) / "summary.json"
    if not path.is_file():
        raise ScenarioError(str(path), "", "no summary.json here; run `servesim run SCENARIO --out DIR` first")
    try:
        summary = json.loads(path.read_text())
        print(format_summary(summary))
    except (ValueError, KeyError, TypeError) as exc:
        raise ScenarioError(str(path), "", f"not a servesim summary ({exc.__class__.__name__}: {exc})") from None
    return 0


def cmd_fit(args) -> int:
    from .fitreport import check_plot_path, format_llm_table, format_table, plot_fit, plot_llm_fit
    from .llm_fit import fit_llm
    from .profiles import load_profile, merge_profiles, refit

    if args.plot:  # before any work or output: a bad path must not cost a fit or leave half a report
        try:
            check_plot_path(args.plot)
        except ValueError as exc:
            raise ScenarioError("--plot", "", str(exc)) from None
    profs = [load_profile(p) for p in args.profiles]
    prof = merge_profiles(profs, list(args.profiles))
    title = f"{prof.model.name} on {prof.device.name} ({prof.dtype})"

    def plot(draw, points, fit):
        try:
            draw(Path(args.plot), points, fit, title)
        except (OSError, ValueError, RuntimeError) as exc:  # e.g. the disk filled up after the check
            raise ScenarioError("--plot", "", f"{args.plot}: could not write the plot ({exc})") from None
        print(f"  wrote {args.plot}")

    if prof.mode == "llm":
        points = [p.model_dump() for p in prof.llm_points]
        fit = fit_llm(points)
        print(f"{', '.join(args.profiles)}: {prof.model.name} on {prof.device.name} ({prof.device.kind}, {prof.dtype}), "
              f"LLM profile: {len(points)} prefill and decode steps, batch up to {prof.max_batch_size}")
        print(format_llm_table(points, fit))
        if args.plot:
            plot(plot_llm_fit, points, fit)
        return 0
    fit = refit(prof).to_dict()
    points = [p.model_dump() for p in sorted(prof.points, key=lambda p: p.batch_size)]
    print(f"{', '.join(args.profiles)}: {prof.model.name} on {prof.device.name} ({prof.device.kind}, {prof.dtype}), "
          f"{len(points)} batch sizes up to {prof.max_batch_size}")
    print(format_table(points, fit))
    for name, res in fit["families"].items():
        params = ", ".join(f"{k}={v:.6g}" for k, v in res["params"].items() if isinstance(v, float))
        if params:
            print(f"  {name:<9} {params}")
    stored = [p.fit.get("chosen") for p in profs if p.fit]
    if stored and any(c != fit["chosen"] for c in stored):
        print(f"  note: the file(s) recorded {', '.join(map(str, stored))}; re-fitting chose {fit['chosen']}")
    if args.plot:
        plot(plot_fit, points, fit)
    return 0


def cmd_validate(args) -> int:
    # the real-serving half executes a torch model, so it lives in the profiler package, found through the
    # `servesim.commands` entry point (sim never imports profiler: no import cycle)
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="servesim.commands") if ep.name == "validate"]
    if not found:
        raise ScenarioError("servesim validate", "", "the profiler package is not installed: run the README's install "
                            "command (pip install -e .)")
    try:
        run_validation = found[0].load()
    except ImportError as exc:
        raise ScenarioError("servesim validate", "", f"needs the profiler's dependencies ({exc})") from None
    return run_validation(args)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every `finally` (temporary output folders) runs before exiting."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `servesim` console script; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2): argparse has already printed its message
        return int(exc.code or 0)
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if threading.current_thread() is threading.main_thread() else None
    try:
        commands = {"run": cmd_run, "check": cmd_check, "report": cmd_report, "fit": cmd_fit, "validate": cmd_validate,
                    "sweep": cmd_sweep, "plan": cmd_plan, "compare": cmd_compare}
        return commands[args.command](args)
    except ScenarioError as exc:
        print(exc.format(), file=sys.stderr)
        return 2
    except Terminated:
        print("servesim: terminated (SIGTERM); nothing half-written was left behind", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("servesim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `servesim check s.yaml | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 128 + signal.SIGPIPE
    except Exception as exc:  # an internal error: say so plainly, full trace only on request
        if os.environ.get("SERVESIM_DEBUG"):
            traceback.print_exc()
        print(f"servesim: internal error: {exc.__class__.__name__}: {exc} (set SERVESIM_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
