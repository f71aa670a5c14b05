# Copyright (c) gskd-mm contributors. All rights reserved.
"""The demo's tests import it as MMSeg's projects are imported: from the
repository root (``projects.gskd_demo.gskd_demo``)."""
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
