#!/usr/bin/env python3
"""Runs a command under a pseudo-terminal for the kubecast tests.

The workspace forbids unsafe Rust, so the tests drive `kubectl -it` through
this script instead of calling openpty/ioctl themselves.

usage: pty_run.py COLS ROWS TIMEOUT_SECONDS -- COMMAND [ARG...]

The command runs as a session leader with the pty's slave as its
controlling terminal, sized COLS x ROWS before it starts.

- stdout: every byte the command writes to the terminal, as it comes.
- stdin: one instruction per line:
    d HEX          type these bytes (hex-encoded) into the terminal
    r COLS ROWS    resize the terminal (the kernel sends SIGWINCH)
  End of stdin changes nothing: the command keeps running.
- exit status: the command's (128+N if killed by signal N). If it is still
  running after TIMEOUT_SECONDS it is killed and the status is 124.
"""

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time


def set_size(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def main():
    if len(sys.argv) < 6 or sys.argv[4] != "--":
        sys.stderr.write(__doc__)
        return 2
    cols, rows, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    argv = sys.argv[5:]

    pid, master = pty.fork()
    if pid == 0:  # the child: fds 0-2 are the slave, our controlling tty
        try:
            set_size(0, cols, rows)
            os.execvp(argv[0], argv)
        except Exception as e:  # noqa: BLE001 - report anything, then fail
            os.write(2, f"pty_run: cannot run {argv[0]}: {e}\n".encode())
        os._exit(127)

    deadline = time.monotonic() + timeout
    stdin_fd = sys.stdin.fileno()
    stdin_open = True
    pending = b""
    timed_out = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            break
        fds = [master] + ([stdin_fd] if stdin_open else [])
        ready, _, _ = select.select(fds, [], [], remaining)
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every slave fd is closed, the child is done
                data = b""
            if not data:
                break
            write_all(1, data)
        if stdin_fd in ready:
            chunk = os.read(stdin_fd, 65536)
            if not chunk:
                stdin_open = False
                continue
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                words = line.decode(errors="replace").split()
                try:
                    if words and words[0] == "d" and len(words) == 2:
                        write_all(master, bytes.fromhex(words[1]))
                    elif words and words[0] == "r" and len(words) == 3:
                        set_size(master, int(words[1]), int(words[2]))
                    elif words:
                        raise ValueError("unknown instruction")
                except ValueError as e:
                    sys.stderr.write(f"pty_run: bad instruction {line!r}: {e}\n")
    _, status = os.waitpid(pid, 0)
    if timed_out:
        sys.stderr.write(f"pty_run: {argv[0]} still running after {timeout}s: killed\n")
        return 124
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
