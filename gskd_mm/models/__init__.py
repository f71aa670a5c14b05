# Copyright (c) gskd-mm contributors. All rights reserved.
from .algorithms import *  # noqa: F401,F403
from .architectures import *  # noqa: F401,F403
from .connectors import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .wrappers import *  # noqa: F401,F403
