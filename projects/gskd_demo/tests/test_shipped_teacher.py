# Copyright (c) gskd-mm contributors. All rights reserved.
"""The demo's shipped teacher: exported with its provenance, loaded (hash
checked) instead of trained for its own setting only, refused when missing
or altered; and the file that ships matches its provenance and the demo's
default setting."""
import importlib.util
import json
import os
import os.path as osp
import shutil
import sys

import pytest
import torch

import projects.gskd_demo.gskd_demo.teacher as teacher
from gskd_mm.apis import init_student
from projects.gskd_demo.gskd_demo.data import generate_params, prepare_data
from projects.gskd_demo.gskd_demo.dataset import default_cache_dir
from projects.gskd_demo.gskd_demo.methods import TEACHER_CONFIG, load_config
from projects.gskd_demo.gskd_demo.training import setup_process

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(PROJECT, 'demo.py')
# A tiny teacher: enough to export, load and measure.
ITERS, BATCH, NUM_TRAIN, NUM_VAL = 4, 4, 16, 8


def teacher_cfg(generate_cfg: dict, iters: int = ITERS, batch: int = BATCH):
    """The teacher's config of a setting (its data root is not in the key:
    a path that does not exist)."""
    return load_config(TEACHER_CONFIG, '/nowhere', generate_cfg, iters, batch,
                       teacher.TEACHER_SEED)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A tiny teacher exported as a shipped one: its files, data, params."""
    root = tmp_path_factory.mktemp('exported')
    path = str(root / 'checkpoints' / 'demo_teacher.pth')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('GSKD_MM_CACHE', str(root / 'cache'))
        setup_process()
        data_root, generate_cfg = prepare_data(NUM_TRAIN, NUM_VAL)
        info = teacher.export_teacher(
            str(root / 'export'),
            data_root,
            generate_cfg,
            ITERS,
            BATCH,
            'WARNING',
            default_cache_dir(),
            'the command',
            path=path)
    return path, info, data_root, generate_cfg


@pytest.fixture
def shipped(exported, tmp_path, monkeypatch):
    """The exported teacher, copied, as the shipped one (paths patched)."""
    path, info, data_root, generate_cfg = exported
    copy = shutil.copytree(osp.dirname(path), str(tmp_path / 'checkpoints'))
    path = osp.join(copy, osp.basename(path))
    monkeypatch.setattr(teacher, 'SHIPPED_TEACHER', path)
    monkeypatch.setattr(teacher, 'SHIPPED_TEACHER_INFO',
                        path[:-len('.pth')] + '.json')
    return path, info, data_root, generate_cfg


def run_teacher(tmp_path, data_root, generate_cfg, iters=ITERS):
    """The demo's teacher of a setting, with an empty teacher cache."""
    return teacher.teacher_run(
        str(tmp_path / 'run'), data_root, generate_cfg, iters, BATCH,
        'WARNING', str(tmp_path / 'empty_cache'))


def test_export_writes_the_weights_and_their_provenance(shipped):
    path, info, _, generate_cfg = shipped
    with open(teacher.SHIPPED_TEACHER_INFO) as f:
        assert json.load(f) == info
    assert info['sha256'] == teacher.sha256_file(path)
    assert info['size_bytes'] == osp.getsize(path)
    assert info['setting_key'] == teacher.setting_key(
        teacher_cfg(generate_cfg), generate_cfg)
    assert (info['command'], info['iters'], info['batch_size'],
            info['generate_cfg']) == ('the command', ITERS, BATCH,
                                      generate_cfg)
    assert 0 <= info['result']['miou'] <= 100
    # The file is the teacher's state dict: it loads strictly.
    init_student(teacher_cfg(generate_cfg), path)


def test_shipped_teacher_is_loaded_not_trained(shipped, tmp_path):
    path, info, data_root, generate_cfg = shipped
    result = run_teacher(tmp_path, data_root, generate_cfg)
    assert result.cached
    # Measured on loading: what its training measured, on the same machine.
    assert result.miou == info['result']['miou']
    assert result.untrained_miou == info['result']['untrained_miou']
    assert_served_by_hash(result.checkpoint, info['sha256'],
                          str(tmp_path / 'empty_cache'))
    assert not osp.exists(tmp_path / 'run' / 'teacher')


def assert_served_by_hash(checkpoint: str, sha256: str, cache: str) -> None:
    """The runs got a copy of the shipped file, in the cache under its
    hash, and nothing was trained (the only teacher entry is the copy)."""
    assert teacher.sha256_file(checkpoint) == sha256
    entry = f'teacher-shipped-{sha256[:12]}'
    assert checkpoint == osp.join(cache, 'demo', entry, 'teacher.pth')
    assert os.listdir(osp.join(cache, 'demo')) == [entry]


def test_another_shipped_teacher_is_another_checkpoint(shipped, tmp_path,
                                                       monkeypatch):
    """Finished demo runs are keyed by the teacher's path: a new shipped
    file (same setting, other weights) must not reuse the old copy."""
    path, info, data_root, generate_cfg = shipped
    first = run_teacher(tmp_path, data_root, generate_cfg).checkpoint
    state = torch.load(path, weights_only=True)
    state['meta']['note'] = 'another file'  # other bytes, same weights
    torch.save(state, path)
    info = dict(info, sha256=teacher.sha256_file(path))
    with open(teacher.SHIPPED_TEACHER_INFO, 'w') as f:
        json.dump(info, f)
    second = run_teacher(tmp_path, data_root, generate_cfg).checkpoint
    assert second != first
    assert teacher.sha256_file(second) == info['sha256']
    # An altered copy in the cache is replaced by the shipped file.
    with open(second, 'ab') as f:
        f.write(b'\0')
    assert run_teacher(tmp_path, data_root, generate_cfg).checkpoint == second
    assert teacher.sha256_file(second) == info['sha256']


def test_another_setting_is_not_served_by_the_shipped_teacher(shipped):
    *_, generate_cfg = shipped
    for cfg, params in [
        (teacher_cfg(generate_cfg, iters=ITERS + 1), generate_cfg),
        (teacher_cfg(generate_cfg, batch=BATCH + 1), generate_cfg),
        (teacher_cfg(generate_params(NUM_TRAIN + 1, NUM_VAL)),
         generate_params(NUM_TRAIN + 1, NUM_VAL)),
    ]:
        assert teacher.shipped_teacher_info(cfg, params, ITERS) is None
    # The data root is not part of the setting.
    assert teacher.shipped_teacher_info(
        teacher_cfg(generate_cfg), generate_cfg, ITERS) is not None


def test_altered_or_missing_shipped_teacher_is_refused(shipped, tmp_path,
                                                       monkeypatch):
    path, info, data_root, generate_cfg = shipped
    original = path + '.orig'
    shutil.copyfile(path, original)
    with open(path, 'r+b') as f:
        f.seek(osp.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ValueError, match='altered') as error:
        run_teacher(tmp_path, data_root, generate_cfg)
    assert 'the command' in str(error.value)
    assert info['sha256'] in str(error.value)

    os.remove(path)
    with pytest.raises(FileNotFoundError, match='is missing.*git checkout'):
        run_teacher(tmp_path, data_root, generate_cfg)

    # Without its provenance the shipped iterations cannot be served: an
    # error, not a silent retraining; other iterations train as before.
    shutil.copyfile(original, path)
    os.remove(teacher.SHIPPED_TEACHER_INFO)
    monkeypatch.setattr(teacher, 'SHIPPED_TEACHER_ITERS', ITERS)
    with pytest.raises(FileNotFoundError, match='provenance'):
        run_teacher(tmp_path, data_root, generate_cfg)
    assert teacher.shipped_teacher_info(
        teacher_cfg(generate_cfg, iters=ITERS + 1), generate_cfg,
        ITERS + 1) is None
    # Nothing was trained on the way.
    assert not osp.exists(tmp_path / 'empty_cache')


def demo_defaults(monkeypatch):
    """The arguments of ``projects/gskd_demo/demo.py`` run without any."""
    spec = importlib.util.spec_from_file_location('gskd_demo_script', DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, 'argv', [DEMO])
    return module.parse_args()


def test_repository_teacher_matches_its_provenance_and_the_demo(
        monkeypatch):
    with open(teacher.SHIPPED_TEACHER_INFO) as f:
        info = json.load(f)
    assert osp.basename(teacher.SHIPPED_TEACHER) == info['file']
    assert teacher.sha256_file(teacher.SHIPPED_TEACHER) == info['sha256']
    assert osp.getsize(teacher.SHIPPED_TEACHER) == info['size_bytes']
    assert info['size_bytes'] < 5e6  # a small file in the repository
    assert info['iters'] == teacher.SHIPPED_TEACHER_ITERS
    # The demo's defaults are the shipped teacher's setting, and the
    # command that made it makes it in that setting.
    args = demo_defaults(monkeypatch)
    generate_cfg = generate_params(args.num_train, args.num_val)
    cfg = load_config(TEACHER_CONFIG, '/nowhere', generate_cfg,
                      args.teacher_iters, args.teacher_batch_size,
                      teacher.TEACHER_SEED)
    assert teacher.setting_key(cfg, generate_cfg) == info['setting_key']
    assert info['command'] == (
        'python projects/gskd_demo/demo.py --export-teacher --teacher-iters '
        f'{args.teacher_iters} --teacher-batch-size '
        f'{args.teacher_batch_size} --num-train {args.num_train} --num-val '
        f'{args.num_val}')
    init_student(cfg, teacher.SHIPPED_TEACHER)  # loads strictly


@pytest.mark.slow  # generates the demo's 500 images and validates twice
def test_repository_teacher_measures_its_provenance(tmp_path, monkeypatch):
    with open(teacher.SHIPPED_TEACHER_INFO) as f:
        info = json.load(f)
    monkeypatch.setenv('GSKD_MM_CACHE', str(tmp_path / 'cache'))
    setup_process()
    params = info['generate_cfg']
    data_root, generate_cfg = prepare_data(params['num_train'],
                                           params['num_val'])
    result = teacher.teacher_run(
        str(tmp_path / 'run'), data_root, generate_cfg, info['iters'],
        info['batch_size'], 'WARNING', default_cache_dir())
    assert_served_by_hash(result.checkpoint, info['sha256'],
                          str(tmp_path / 'cache'))
    # Another machine may round a pixel differently, not more.
    assert result.miou == pytest.approx(info['result']['miou'], abs=0.05)
    assert result.untrained_miou == pytest.approx(
        info['result']['untrained_miou'], abs=0.05)
