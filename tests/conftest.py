# Copyright (c) gskd-mm contributors. All rights reserved.
"""Set-up shared by every test.

The modules of gskd-mm, MMSeg and MMRazor are registered once, here, for
the whole run; and MMEngine's default scope is reset after each test, so
that a scope one test leaves behind (``init_default_scope`` sets a global
one) cannot change which registry another test builds from.
"""
import pytest
from mmengine.registry import DefaultScope

from gskd_mm.utils import register_all_modules

register_all_modules(init_default_scope=False)


@pytest.fixture(autouse=True)
def reset_default_scope():
    """Undo the default scopes a test sets, after it.

    The scopes a test starts with (none, or its module's fixtures') are
    put back, so that no test depends on the order the tests run in.
    """
    scopes = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(scopes)
