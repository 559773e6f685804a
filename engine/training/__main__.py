"""The command line: ``python -m engine.training --config run.json`` does what Start does.

    python -m engine.training --config run.json [--runs-dir DIR]   # a new run, in this terminal
    python -m engine.training --resume DIR/<run_id>                # go on after a crash or stop
    python -m engine.training --list [--runs-dir DIR]              # the runs and their state

``run.json`` holds a ``RunConfig`` (only ``dataset``, the data set folder, is required). The run
folder is ``DIR/<run_id>`` (``DIR``: ``--runs-dir``, else ``$CNN_EXPLORER_RUNS``); the page
lists it like the runs it started. Exit status: 0 finished or stopped, 2 diverged, 1 failed.
(The Start button launches ``--config DIR/<run_id>/config.json --run-dir DIR/<run_id>``.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from engine.errors import CNNExplorerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.training",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a RunConfig as JSON")
    parser.add_argument("--runs-dir", help="the runs folder (default $CNN_EXPLORER_RUNS)")
    parser.add_argument("--run-dir", help="train this prepared run folder (what Start runs)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="resume this run folder")
    parser.add_argument("--max-runs", type=int, help="most runs going at once")
    parser.add_argument("--list", action="store_true", help="list the runs")
    args = parser.parse_args(argv)

    from engine.training import runs
    from engine.training.config import load_config
    from engine.training.run import is_chief

    try:
        if args.list:
            for s in runs.list_runs(args.runs_dir):
                print(f"{s.run_id}\t{s.state}\t{s.epochs_done}/{s.total_epochs}\t{s.name}")
            return 0
        if args.resume:
            run_dir = runs.resume(args.resume, launch=False, max_concurrent=args.max_runs)
        elif args.run_dir:
            run_dir = Path(args.run_dir)
        elif args.config:
            config = load_config(args.config)
            # A non-chief worker of a multi-worker cluster keeps its copy of the run apart.
            runs_dir = (args.runs_dir if is_chief(config=config)
                        else tempfile.mkdtemp(prefix="cnn-worker-"))
            run_dir = runs.create_run(config, runs_dir, max_concurrent=args.max_runs,
                                      launch=False)
            print(f"run folder: {run_dir}", flush=True)
        else:
            parser.error("give --config, --resume or --list")
        from engine.training.run import train

        if not args.run_dir:  # in a terminal: the run folder gets its log.txt all the same
            _tee(Path(run_dir) / runs.LOG_FILE)
        status = train(run_dir)
    except CNNExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Exception):  # train() printed the traceback to the log
        return 1
    print(f"{status.state}: {status.message}", flush=True)
    return {"diverged": 2, "failed": 1}.get(status.state, 0)


class _Tee:
    """Writes to the terminal and to the run's log file."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text):
        self.stream.write(text)
        self.log.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()
        self.log.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _tee(path: Path) -> None:
    log = open(path, "a", encoding="utf-8", buffering=1)
    sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)


if __name__ == "__main__":
    sys.exit(main())
