# Copyright (c) gskd-mm contributors. All rights reserved.
"""Bad input to every tool ends in one line on stderr, not a traceback.

Every tool of ``tools/`` runs with a wrong argument (a missing config or
checkpoint, a plain MMSeg config or a ``_base_`` piece where a recipe is
due, a crop or count of zero) in one child process, which runs each tool as
``__main__`` in turn (the tools fail before they build anything, so one
interpreter's imports serve them all): each must exit with 1 or 2 and
print one ``<tool>: error: ...`` line that names the problem.
"""
import json
import os.path as osp
import sys

from helpers import run_with_deadline

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RECIPE = ('projects/gskd_demo/configs/'
          'dist-gskd_deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_'
          'synthetic-64x64.py')
PLAIN = 'projects/gskd_demo/configs/deeplabv3_r18-w8-d4_synthetic-64x64.py'
PIECE = 'configs/gskd/_base_/methods/cirkd.py'
MISSING = 'no/such/config.py'
NO_CKPT = 'no/such/iter_1.pth'
KD_BUDGET_WHY = ('kd_budget compares a distillation recipe with its student '
                 'trained alone')

# (tool, arguments, what its error line must say)
CASES = [
    ('analysis_tools/kd_budget.py', [PLAIN],
     ['is not a distillation recipe', 'model.architecture', KD_BUDGET_WHY]),
    ('analysis_tools/kd_budget.py', [PIECE],
     ['is not a distillation recipe', KD_BUDGET_WHY]),
    ('analysis_tools/kd_budget.py', [RECIPE, '--crop', '0', '0'],
     ['--crop 0 0', 'at least 32']),
    ('analysis_tools/kd_budget.py', [MISSING],
     [f'config {MISSING} does not exist']),
    ('analysis_tools/kd_budget.py', [RECIPE, '--repeats', '0'],
     ['--repeats 0', 'at least 1']),
    ('analysis_tools/loss_gradients.py', [PLAIN],
     ['is not a distillation recipe', 'model.architecture']),
    ('analysis_tools/loss_gradients.py', [MISSING], ['does not exist']),
    ('analysis_tools/loss_gradients.py', [RECIPE, '--crop', '0', '0'],
     ['--crop 0 0']),
    ('analysis_tools/loss_gradients.py', [RECIPE, '--checkpoint', NO_CKPT],
     [f'checkpoint {NO_CKPT} does not exist']),
    ('analysis_tools/benchmark_cirkd.py', ['--crop', '0', '0'],
     ['--crop 0 0']),
    ('analysis_tools/benchmark_cirkd.py', ['--batch', '0'], ['--batch 0']),
    ('analysis_tools/benchmark_gskd.py', ['--repeats', '0'],
     ['--repeats 0']),
    ('analysis_tools/benchmark_balancer.py', ['--crop', '0', '0'],
     ['--crop 0 0']),
    ('analysis_tools/gskd_toy.py', ['--seeds', '0'], ['--seeds 0']),
    ('visualize_gskd.py', [PLAIN, NO_CKPT, 'image.png'],
     ['is not a distillation recipe']),
    ('visualize_gskd.py', [RECIPE, NO_CKPT, 'image.png'],
     [f'checkpoint {NO_CKPT} does not exist']),
    ('visualize_gskd.py', [MISSING, NO_CKPT, 'image.png'],
     ['does not exist']),
    ('model_converters/distill_to_student.py', [PLAIN, NO_CKPT, 'out'],
     ['is not a distillation recipe']),
    ('model_converters/distill_to_student.py', [RECIPE, NO_CKPT, 'out'],
     [f'checkpoint {NO_CKPT} does not exist']),
    ('misc/gen_metafile.py', ['--config-dir', 'no/such/dir'],
     ['is not a directory']),
    ('train.py', [MISSING], [f'config {MISSING} does not exist']),
    ('test.py', [MISSING, NO_CKPT], [f'config {MISSING} does not exist']),
    ('test.py', [RECIPE, NO_CKPT], [f'checkpoint {NO_CKPT} does not exist']),
]

# Runs each case's tool as __main__ and prints what it did, as JSON.
DRIVER = r'''
import contextlib, io, json, runpy, sys, traceback
results = []
for tool, args in json.loads(sys.argv[1]):
    sys.argv = [tool, *args]
    stderr = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(stderr), \
            contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_path(tool, run_name='__main__')
        except SystemExit as exit:
            code = exit.code
        except BaseException:
            code = 'traceback'
            traceback.print_exc(file=stderr)
    results.append(dict(code=code, stderr=stderr.getvalue()))
print(json.dumps(results))
'''


def test_every_tool_answers_bad_input_in_one_line():
    cases = [(osp.join('tools', tool), args) for tool, args, _ in CASES]
    result = run_with_deadline(
        [sys.executable, '-c', DRIVER, json.dumps(cases)], 300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    for (tool, args, expected), answer in zip(CASES, answers):
        lines = [line for line in answer['stderr'].splitlines() if line]
        what = f'{tool} {" ".join(args)}'
        assert answer['code'] in (1, 2), f'{what}:\n{answer["stderr"]}'
        assert lines and 'Traceback' not in answer['stderr'], what
        error = lines[-1]
        assert error.startswith(f'{osp.basename(tool)}: error: '), \
            f'{what}: {error}'
        for part in expected:
            assert part in error, f'{what}: {error!r} lacks {part!r}'
