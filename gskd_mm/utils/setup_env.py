# Copyright (c) gskd-mm contributors. All rights reserved.
def register_all_modules(init_default_scope: bool = True) -> None:
    """Register the modules of MMRazor, MMSeg and gskd-mm.

    Args:
        init_default_scope (bool): Whether to make ``mmrazor`` the default
            scope, as MMRazor's own tools do. Defaults to True.
    """
    import mmseg.utils
    import mmrazor.utils

    import gskd_mm  # noqa: F401  registers GSKD modules into MMRazor

    mmseg.utils.register_all_modules(init_default_scope=False)
    mmrazor.utils.register_all_modules(init_default_scope=init_default_scope)
