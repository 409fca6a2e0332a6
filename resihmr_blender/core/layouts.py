"""Keypoint layouts: BODY_25, OpenPose's COCO-18, COCO-17 and LDPose's COCO-17+8 orders, and the OpenPose field
names, new and old (DESIGN §3.4).

Pure tables: no numpy arrays that change, no I/O.
"""
from __future__ import annotations

BODY25_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye",
    "LEye", "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
BODY25_INDEX: dict[str, int] = {name: i for i, name in enumerate(BODY25_NAMES)}

N_BODY25 = 25
N_RESIDUAL = 8
N_HAND = 21
N_FACE = 70  # OpenPose face model: 68 landmarks + 2 pupils

COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO index -> BODY_25 index. COCO has no Neck, MidHip, toes or heels; those stay unavailable
# (never synthesised: a made-up neck would pull the fit towards a guess).
COCO17_TO_BODY25: tuple[int, ...] = (0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11)
# Order of the 8 residual endpoints after the 17 COCO points in LDPose's mmpose dataset config.
LDPOSE_COCO_RESIDUAL_ORDER: tuple[str, ...] = (
    "above_left_elbow_end", "above_right_elbow_end", "below_left_elbow_end", "below_right_elbow_end",
    "above_left_knee_end", "above_right_knee_end", "below_left_knee_end", "below_right_knee_end",
)

# OpenPose's COCO model (`--model_pose COCO`, and every OpenPose before BODY_25 became the default in 1.3):
# 18 points. Everything but MidHip and the feet exists in BODY_25 under the same name.
OPENPOSE_COCO18_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)
COCO18_TO_BODY25: tuple[int, ...] = tuple(BODY25_INDEX[name] for name in OPENPOSE_COCO18_NAMES)

# Layouts an OpenPose-style `pose_keypoints_2d` array can hold, told apart by their length (points).
# "openpose-coco18": OpenPose's COCO-18; "coco-ldpose": COCO-17 (also the body part of LDPose's COCO-17+8).
SOURCE_FORMATS = ("openpose", "coco-ldpose", "openpose-coco18")
POSE_LAYOUTS: dict[int, tuple[str, str]] = {  # points -> (source format, name for messages)
    N_BODY25: ("openpose", "BODY_25"),
    18: ("openpose-coco18", "OpenPose COCO-18"),
    17: ("coco-ldpose", "COCO-17"),
}
# Layouts we recognise but cannot read, for a message that says what the file holds.
OTHER_POSE_LAYOUTS: dict[int, str] = {
    15: "OpenPose MPI / MPI_4 (15 points)",
    26: "HALPE-26 (26 points, e.g. AlphaPose or RTMPose)",
    133: "COCO-WholeBody (133 points)",
    135: "OpenPose BODY_135 (135 points)",
}

# OpenPose field names, also used to name fields in errors about in-memory people.
F_POSE = "pose_keypoints_2d"
F_RESIDUAL = "residual_keypoints_2d"
F_HAND_L = "hand_left_keypoints_2d"
F_HAND_R = "hand_right_keypoints_2d"
F_FACE = "face_keypoints_2d"
# OpenPose before 1.2 wrote the same arrays without the "_2d" suffix.
OLD_FIELD_NAMES: dict[str, str] = {F_POSE: "pose_keypoints", F_HAND_L: "hand_left_keypoints",
                                   F_HAND_R: "hand_right_keypoints", F_FACE: "face_keypoints"}
F_AVAILABLE = "body25_available"  # our extension: keeps COCO's missing points missing on round trip
F_SOURCE = "source_format"  # our extension
