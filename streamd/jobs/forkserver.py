"""Imported first by the forkserver that worker processes are forked from (`local`), and
nowhere else: the forkserver dies with the server that started it, even on kill -9, and
each worker dies with the forkserver (`worker.init`), so no worker outlives the server.
(The forkserver alone would not go: every worker holds its "alive" pipe open.)"""

from __future__ import annotations

import signal

from streamd.process import FORKSERVER_NAME, die_with_parent, set_process_name

die_with_parent(signal.SIGKILL)
set_process_name(FORKSERVER_NAME)
