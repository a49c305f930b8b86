"""Hides TensorFlow's C++ log lines (start-up notices, converter chatter) from stderr.

TensorFlow 2.21 writes its start-up lines (oneDNN, CUDA drivers, CPU features) through absl
before absl's logging is initialized, so `TF_CPP_MIN_LOG_LEVEL` does not reach them; they can
only be taken out of the stream. `hidden_tensorflow_logs()` sends file descriptor 2 through a
filter that drops those lines and passes everything else on (Python warnings, tracebacks,
fatal `F` lines). `TF_CPP_MIN_LOG_LEVEL=0` in the environment turns the filter off.

This module uses the standard library only: `keras_vit/__init__.py` imports it before Keras.

Example:
>>> import sys
>>> with hidden_tensorflow_logs():
...     print("I0000 00:00:1795973067.474588    7465 port.cc:153] oneDNN custom operations are on.",
...           file=sys.stderr)
...     print("a real warning", file=sys.stderr)
>>> is_tensorflow_log_line("W0000 00:00:1795973179.725843    8402 tf_tfl_flatbuffer_helpers.cc:364] Ignored")
True
>>> is_tensorflow_log_line("UserWarning: something the user should see")
False
"""

import contextlib
import os
import re
import sys
import threading

# absl/glog lines below FATAL ("I0000 00:00:1795973067.474588    7465 port.cc:153] ..."), TensorFlow's
# older "2024-01-01 12:00:00.123456: I tensorflow/..." lines, and the unprefixed lines TensorFlow and
# LiteRT print next to them.
_LOG_LINE = re.compile(
    rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\]"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags"
    rb"|fully_quantize: \d+, inference_type: "
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU)"
)


def is_tensorflow_log_line(line):
    """True for a line of TensorFlow's (or LiteRT's) C++ logging below FATAL."""
    if isinstance(line, str):
        line = line.encode()
    return bool(_LOG_LINE.match(line))


def wants_tensorflow_logs():
    """True when the user asked for TensorFlow's logs with TF_CPP_MIN_LOG_LEVEL=0."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0"


@contextlib.contextmanager
def hidden_tensorflow_logs():
    """Within the block, lines written to file descriptor 2 reach stderr unless they are
    TensorFlow C++ log lines (`is_tensorflow_log_line`). Does nothing when the user set
    TF_CPP_MIN_LOG_LEVEL=0 or when stderr has no file descriptor (some notebooks)."""
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    if wants_tensorflow_logs():
        os.close(original)
        yield
        return
    read_end, write_end = os.pipe()

    def forward():
        pending = b""
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not is_tensorflow_log_line(line))
            if kept:
                os.write(original, kept)
        if pending and not is_tensorflow_log_line(pending):
            os.write(original, pending)
        os.close(read_end)

    reader = threading.Thread(target=forward, name="keras_vit-stderr-filter", daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)  # closes the pipe's last write end: the reader drains it and stops
        reader.join(timeout=10)
        os.close(original)
