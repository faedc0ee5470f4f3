"""The server-log check for the musl getopt fault, on healthy and corrupted log lines."""

from __future__ import annotations

import pytest

from .tmate_session import garbage_bind_key_lines

GOOD = """\
[47ND...] Local cmd: bind-key C-b send-prefix
[47ND...] Local cmd: bind-key " split-window
[47ND...] Local cmd: bind-key ; last-pane
[47ND...] Local cmd: bind-key - delete-buffer
[47ND...] Local cmd: bind-key $ command-prompt -I#S "rename-session '%%'"
[47ND...] Local cmd: bind-key -r M-Up resize-pane -U 5
[47ND...] Local cmd: bind-key -n MouseDown1Pane select-pane -t=; send-keys -M
[47ND...] Local cmd: bind-key -T copy-mode -r C-Up send-keys -X scroll-up
[47ND...] Local cmd: bind-key \\\\ split-window
[47ND...] Local cmd: set-option -g status-keys emacs
"""


@pytest.mark.parametrize(
    "line",
    [
        "[47ND...] Local cmd: bind-key \\001\\377 send-prefix",  # vis-escaped bytes
        "[47ND...] Local cmd: bind-key C-b send\x07prefix",  # a raw control byte
        "[47ND...] Local cmd: bind-key -T \\M-^Xq\\300 C-b send-prefix",  # stale optarg
        "[47ND...] Local cmd: bind-key \ufffd\ufffd send-prefix",  # undecodable bytes
        "[47ND...] Local cmd: bind-key -x C-b send-prefix",  # invented flag
        "[47ND...] Local cmd: bind-key Upp select-pane -U",  # no such key
        "[47ND...] Local cmd: bind-key -r -U select-pane",  # shifted arguments
        "[47ND...] Local cmd: bind-key C-b",  # no command
        "[47ND...] Local cmd: bind-key C-b 'send-prefix'",  # not a command word
        "[47ND...] parse error: usage: bind-key [-cnr] [-t mode-table] [-T key-table] key",
    ],
)
def test_garbage_bind_key_lines(line: str) -> None:
    assert garbage_bind_key_lines(GOOD) == []
    assert garbage_bind_key_lines(GOOD + line + "\n") == [line]
