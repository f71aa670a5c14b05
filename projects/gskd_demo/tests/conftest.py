# Copyright (c) gskd-mm contributors. All rights reserved.
"""The demo's tests import it as MMSeg's projects are imported: from the
repository root (``projects.gskd_demo.gskd_demo``); they share the test
helpers of the package's tests (``tests/helpers``)."""
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
for path in (REPO_ROOT, osp.join(REPO_ROOT, 'tests')):
    if path not in sys.path:
        sys.path.insert(0, path)
