"""Tissue labels and their Hounsfield units per contrast phase (the ranges the tests check)."""
from __future__ import annotations

PHASES = ("non_contrast", "arterial", "portal_venous")

# label id -> name; 0 is air outside the body
LABELS: dict[int, str] = {
    0: "air", 1: "skin", 2: "subcutaneous_fat", 3: "muscle", 4: "visceral_fat", 5: "bone_cortex",
    6: "bone_marrow", 7: "disc", 8: "spinal_canal", 9: "lung", 10: "heart", 11: "aorta", 12: "ivc",
    13: "liver", 14: "spleen", 15: "kidney_cortex", 16: "kidney_medulla", 17: "stomach_wall",
    18: "gastric_fluid", 19: "bowel_gas", 20: "bowel_wall", 21: "bowel_content", 22: "pancreas",
    23: "crus", 24: "adrenal", 25: "portal_vein", 26: "gallbladder", 27: "bladder", 28: "renal_sinus_fat",
    29: "table", 30: "lesion", 31: "pulmonary_vessel",
}
LABEL_OF = {name: k for k, name in LABELS.items()}

# tissue -> (non_contrast, arterial, portal_venous) mean HU of the noiseless rendering
HU: dict[str, tuple[float, float, float]] = {
    "air": (-1000, -1000, -1000), "skin": (40, 45, 50), "subcutaneous_fat": (-105, -100, -100),
    "muscle": (50, 55, 60), "visceral_fat": (-100, -95, -95), "bone_cortex": (750, 750, 750),
    "bone_marrow": (220, 230, 235), "disc": (85, 90, 95), "spinal_canal": (12, 15, 18), "lung": (-860, -860, -860),
    "heart": (40, 250, 150), "aorta": (40, 300, 160), "ivc": (38, 80, 135), "liver": (55, 70, 110),
    "spleen": (45, 115, 120), "kidney_cortex": (32, 180, 165), "kidney_medulla": (30, 75, 150),
    "stomach_wall": (40, 80, 90), "gastric_fluid": (8, 8, 8), "bowel_gas": (-950, -950, -950),
    "bowel_wall": (38, 70, 85), "bowel_content": (-20, -20, -20), "pancreas": (42, 110, 95), "crus": (50, 55, 60),
    "adrenal": (28, 60, 58), "portal_vein": (40, 95, 170), "gallbladder": (5, 5, 5), "bladder": (8, 8, 8),
    "renal_sinus_fat": (-90, -90, -90), "table": (150, 150, 150),
    "pulmonary_vessel": (40, 200, 140),
}

# tissue -> accepted (low, high) range of the mean HU over its interior, per phase (checked by the tests)
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    t: {p: (v - 25, v + 25) for p, v in zip(PHASES, vals)} for t, vals in HU.items() if t not in ("air", "table")
}
RANGES["adrenal"] = {"non_contrast": (10, 45), "arterial": (35, 90), "portal_venous": (35, 90)}
RANGES["liver"] = {"non_contrast": (40, 70), "arterial": (55, 90), "portal_venous": (90, 130)}
RANGES["aorta"] = {"non_contrast": (25, 55), "arterial": (220, 400), "portal_venous": (120, 200)}


def hu(tissue: str, phase: str) -> float:
    return float(HU[tissue][PHASES.index(phase)])


# lesion types -> mean HU range (as the issue states them)
LESION_TYPES: dict[str, tuple[float, float]] = {
    "lipid_rich_adenoma": (-10.0, 10.0),
    "lipid_poor_adenoma": (20.0, 40.0),
    "heterogeneous_mass": (25.0, 50.0),
    "cyst": (0.0, 15.0),
    "myelolipoma": (-80.0, -20.0),
}
