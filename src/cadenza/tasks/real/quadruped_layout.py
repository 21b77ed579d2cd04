"""The rescue-dog robot's layout, shared by the MuJoCo task and its gait base (no MuJoCo import).

Body frame: x forward (between the two front legs), y left, z up. Motor order (Ant-v5's actuator
order): front-right hip, ankle, front-left hip, ankle, back-left hip, ankle, back-right hip, ankle.
"""

from __future__ import annotations

import numpy as np

GAIT_HZ = 2.0  # the clock the task publishes and the gait base keys its trot to
STAND_POSE = np.array([0.0, 0.8, 0.0, 0.8, 0.0, -0.8, 0.0, -0.8])  # rad, motor order
