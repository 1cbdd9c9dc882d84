"""The numbers more than one layer shares, each in one place; imports nothing of distill.

Beside events.py (the vocabulary of what runs report) at the ground of the layers.
"""

from __future__ import annotations

# Codebook health (models/health.py), the warnings (training) and the pages share these.
LOW_UTILIZATION = 0.30  # a codebook level under this share of codes in use gets a warning
MIN_VECTORS_PER_CODE = 2  # fewer audible vectors per code than this: a level is not judged
# A level k > 1 whose error reduction is under this share of level 1's earns almost
# nothing for its codes: it gets a warning that suggests fewer levels.
LOW_GAIN_SHARE = 0.05
# What "error reduction" counts, for every table's header: the drop in the multiscale
# log-mel L1 (the training loss, models/rvqvae.py) when the level is added, held-out files.
ERROR_REDUCTION_UNIT = "log-mel L1"

# Dataset size tiers: "up to 20 files", "up to 100", "more". The codebook size, the prior's
# width and the memorization threshold each pick one value per tier (SMALL_SET, MID_SET).
SMALL_SET = 20
MID_SET = 100
SET_TIERS = (SMALL_SET, MID_SET, None)  # the most files of each tier (None: no limit)
TIERS_HELP = f"{{}}/{{}}/{{}} for <={SMALL_SET}/<={MID_SET}/more files"  # for help texts


def size_tier(file_count: int) -> int:
    """0 for a small set (up to SMALL_SET files), 1 up to MID_SET, 2 above."""
    return 0 if file_count <= SMALL_SET else 1 if file_count <= MID_SET else 2
