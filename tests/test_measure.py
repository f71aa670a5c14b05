# Copyright (c) gskd-mm contributors. All rights reserved.
"""gskd_mm.analysis.measure: the benchmark tools' child processes and peak
memory."""
import sys
import time

import pytest

from gskd_mm.analysis import MeasurementError, run_measurement

from helpers import alive

# A child that starts a grandchild in its group, writes its pid, then hangs.
HANGS = ('import subprocess, sys, time; '
         'p = subprocess.Popen([sys.executable, "-c", '
         '"import time; time.sleep(600)"]); '
         'open(sys.argv[1], "w").write(str(p.pid)); time.sleep(600)')


def test_reads_back_the_last_json_line():
    result = run_measurement(
        ['-c', 'import json; print("warming up"); '
         'print(json.dumps(dict(seconds=1.5)))'])
    assert result == dict(seconds=1.5)


@pytest.mark.parametrize('code, says', [
    ('import sys; sys.exit(3)', 'exited with 3'),
    ('raise ValueError("bad shape")', 'bad shape'),
    ('print("no json")', 'printed no JSON line'),
])
def test_failures_raise_one_error(code, says):
    with pytest.raises(MeasurementError, match=says):
        run_measurement(['-c', code])


def test_timeout_kills_the_whole_group(tmp_path):
    pid_file = tmp_path / 'grandchild'
    with pytest.raises(MeasurementError, match='still running'):
        run_measurement(['-c', HANGS, str(pid_file)], timeout=10)
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild), 'the grandchild outlived the timeout'


PEAK = ('import json, torch\n'
        'from gskd_mm.analysis import PeakMemory\n'
        'held = torch.ones(2**24)  # 64 MB held before: not counted\n'
        'with PeakMemory("cpu") as memory:\n'
        '    block = torch.ones(2**25)  # 128 MB\n'
        '    del block\n'
        'print(json.dumps(dict(growth=memory.growth_mb, '
        'peak=memory.peak_mb, start=memory.start_mb)))\n')


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='peak resident memory is read from /proc')
def test_peak_memory_counts_what_the_block_allocated(tmp_path):
    # In a fresh process, as the benchmarks measure: in this one, memory
    # that earlier tests freed may be reused without raising the peak.
    script = tmp_path / 'peak.py'
    script.write_text(PEAK)
    memory = run_measurement([str(script)], timeout=300)
    assert memory['growth'] >= 120
    assert memory['growth'] < 128 + 64
    assert memory['peak'] >= memory['start'] + 120
