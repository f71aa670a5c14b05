# Copyright (c) gskd-mm contributors. All rights reserved.
"""Write the model-zoo metafile of the recipes, ``configs/gskd/metafile.yml``.

The metafile is generated from the recipes (their student, teacher and
method bases; :mod:`gskd_mm.utils.metafile`): after adding or changing a
recipe, run this and commit the file. A test checks that the committed file
is the generated one.

Example::

    python tools/misc/gen_metafile.py
    python tools/misc/gen_metafile.py --check  # exit 1 if out of date
"""
import argparse
import os.path as osp
import sys

from gskd_mm.utils.cli import tool_error
from gskd_mm.utils.metafile import metafile_text, recipe_metafile

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'gskd')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config-dir', default=CONFIG_DIR)
    parser.add_argument(
        '--check',
        action='store_true',
        help='only compare with the committed file; exit 1 if it differs')
    args = parser.parse_args()
    if not osp.isdir(args.config_dir):
        tool_error(f'--config-dir {args.config_dir} is not a directory: give '
                   'the directory of the recipes (default: configs/gskd)')
    text = metafile_text(recipe_metafile(args.config_dir))
    path = osp.join(args.config_dir, 'metafile.yml')
    if args.check:
        with open(path) as f:
            if f.read() != text:
                sys.exit(f'{path} is out of date: run '
                         'python tools/misc/gen_metafile.py')
        return
    with open(path, 'w') as f:
        f.write(text)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
