"""OpenCV is loaded when the scrubber first needs it, not with the agent (issue 15: an agent that
shares only identified studies stays ~25 MB smaller)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_the_agent_starts_without_opencv_and_the_detector_loads_it_on_one_thread() -> None:
    probe = textwrap.dedent(
        """
        import sys
        import node_agent.app, node_agent.deid_step, deidentify.instance
        assert "cv2" not in sys.modules, "imported with the agent"
        import numpy as np
        from deidentify.pixels import textdetect
        textdetect.find_text(np.zeros((64, 64), np.uint8))
        import cv2
        assert cv2.getNumThreads() == 1
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
