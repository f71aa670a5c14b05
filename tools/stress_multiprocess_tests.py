# Copyright (c) gskd-mm contributors. All rights reserved.
"""Run every multi-process test many times in a row and count the outcomes.

The tests that start several processes (a gloo process group of spawned
workers, or torchrun) are marked ``multiprocess``. A hang or an abort at
exit shows up once in many runs, so this runs them ``--repeats`` times (one
pytest session per round, in a session of its own that is killed whole on
its deadline, with the ranks torchrun started in sessions of their own) and
reports, per test, how often it passed, failed, or did not finish. Not part
of CI. The marked tests include the exact-resume and preemption runs of
``tests/test_exact_resume.py`` (2 gloo ranks through dist_train.sh: killed
and resumed, stopped by SIGTERM, a lost rank): those 6 alone take about 8
minutes a round on 2 CPU cores; ``-k`` picks some.

Example::

    python tools/stress_multiprocess_tests.py --repeats 30
    python tools/stress_multiprocess_tests.py --repeats 5 -k ddp
    python tools/stress_multiprocess_tests.py --repeats 3 \
        -k "two_ranks_killed or killed_rank or sigterm"
"""
import argparse
import collections
import os.path as osp
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from typing import Dict

from gskd_mm.utils import kill_process_tree

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args() -> argparse.Namespace:
    """Parse the command line.

    Returns:
        argparse.Namespace: The arguments.
    """
    parser = argparse.ArgumentParser(
        description='Run the multi-process tests many times in a row')
    parser.add_argument(
        '--repeats', type=int, default=30, help='rounds (default: 30)')
    parser.add_argument(
        '-k', dest='keyword', help="pytest's -k, to run some of them")
    parser.add_argument(
        '--round-timeout',
        type=float,
        default=1800,
        help='seconds before a round is killed and its unfinished tests '
        'counted as such (default: 1800)')
    parser.add_argument(
        '--out', help='a file the counts are written to after every round')
    args = parser.parse_args()
    if args.repeats < 1 or args.round_timeout <= 0:
        parser.error('--repeats must be at least 1 and --round-timeout '
                     'positive')
    return args


def run_round(args: argparse.Namespace, report: str) -> Dict[str, str]:
    """One pytest session of the marked tests.

    Args:
        args (argparse.Namespace): The arguments.
        report (str): Path of its JUnit XML report.

    Returns:
        dict: Test id -> ``passed``, ``failed``, ``skipped``, or
        ``unfinished`` (the session did not write its report).
    """
    cmd = [
        sys.executable, '-m', 'pytest', 'tests', 'projects', '-m',
        'multiprocess', '-q', '-p', 'no:cacheprovider', f'--junitxml={report}'
    ]
    if args.keyword:
        cmd += ['-k', args.keyword]
    process = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        process.wait(timeout=args.round_timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:  # the session and whatever it started, in any session
        kill_process_tree(process.pid)
        process.wait()
    if not osp.isfile(report):
        return {'(round)': 'unfinished'}
    outcomes = {}
    for case in ET.parse(report).iter('testcase'):
        name = f'{case.get("classname")}::{case.get("name")}'
        tags = {child.tag for child in case}
        outcomes[name] = ('failed' if tags & {'failure', 'error'} else
                          'skipped' if 'skipped' in tags else 'passed')
    return outcomes


def main() -> None:
    """Run the rounds and print the counts."""
    args = parse_args()
    counts = collections.defaultdict(collections.Counter)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            report = osp.join(tmp, f'round{i}.xml')
            for name, outcome in run_round(args, report).items():
                counts[name][outcome] += 1
            lines = [
                f'after {i + 1} of {args.repeats} rounds, '
                f'{time.monotonic() - start:.0f} s:'
            ] + [
                f'  {name}: ' + ', '.join(f'{k} {v}'
                                          for k, v in sorted(c.items()))
                for name, c in sorted(counts.items())
            ]
            print('\n'.join(lines), flush=True)
            if args.out:
                with open(args.out, 'w') as f:
                    f.write('\n'.join(lines) + '\n')
    failed = any(set(c) - {'passed', 'skipped'} for c in counts.values())
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
