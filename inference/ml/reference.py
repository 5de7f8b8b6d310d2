"""A normal reference for the lesion detector: how far each cell of a gland's feature map lies from every cell
of the training scans' normal glands.

A detector pretrained on generated anatomy fires on real normal structures it never saw (an unenhanced kidney's
upper pole, bowel, the gland itself); its fine-tuned head cannot tell them from lesions. Anatomy the training
scans show as normal, though, is *near* a cell of their normal glands in feature space, and a lesion is not. The
distance to the nearest normal cell is that evidence, given to the head as one more channel that multiple-instance
learning weighs against the detector's own features. Method: PatchCore's memory bank of patch features with a
greedy coreset and nearest-neighbour distance (Roth et al., "Towards Total Recall in Industrial Anomaly Detection",
CVPR 2022; the coreset is Sener & Savarese's k-centre greedy, ICLR 2018), on the detector's frozen map.

Training images of a normal gland are part of the bank, so their own distance would be zero; they are measured
with their own patient's cells left out (:func:`nearest_distance` ``groups``), as an unseen scan is.
"""
from __future__ import annotations

import numpy as np
import torch

QUERY_CHUNK = 4096  # query cells per distance block: QUERY_CHUNK x bank rows x 4 bytes (128 MB at 8192 rows)
MAX_CANDIDATES = 1 << 17  # normal cells the coreset chooses from (a seeded sample beyond): its time is linear in them


def cells(maps: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w]`` -> ``[B * h * w, C]`` float32 (one row per cell, image-major)."""
    return maps.float().permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


def coreset(x: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``size`` rows of ``x`` ``[N, C]`` chosen by greedy k-centre (each next row the farthest from
    those chosen), so rare normal structures keep a representative; all rows when ``N <= size``."""
    n = len(x)
    if n <= size:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = torch.randint(n, (1,), generator=gen)
    sq = (x * x).sum(1)
    nearest = torch.full((n,), float("inf"))
    for i in range(1, size):
        c = x[chosen[i - 1]]
        d = sq - 2 * (x @ c) + sq[chosen[i - 1]]
        nearest = torch.minimum(nearest, d)
        chosen[i] = torch.argmax(nearest)
    return chosen


def nearest(query: torch.Tensor, bank: torch.Tensor, left_out: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distance ``[N]`` from each row of ``query`` ``[N, C]`` to its nearest row of ``bank`` ``[M, C]``,
    all at once (``N * M`` floats) in plain matrix products, which export to ONNX as they are; ``left_out``
    ``[N, M]`` True where a bank row does not count (inf when none counts)."""
    d = (query * query).sum(1, keepdim=True) - 2 * (query @ bank.T) + (bank * bank).sum(1)
    if left_out is not None:
        d = d.masked_fill(left_out, float("inf"))
    return d.amin(1).clamp_min(0).sqrt()


def nearest_distance(query: torch.Tensor, bank: torch.Tensor, query_groups: torch.Tensor | None = None,
                     bank_groups: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distance ``[N]`` from each query row ``[N, C]`` to its nearest bank row ``[M, C]``; with groups
    (``[N]``, ``[M]`` integer patient ids), bank rows of the query's own group are left out (inf when a group
    has the whole bank). Computed in blocks of ``QUERY_CHUNK`` rows."""
    out = torch.empty(len(query))
    if len(bank) == 0:
        return out.fill_(float("inf"))
    bank = bank.float()
    for s in range(0, len(query), QUERY_CHUNK):
        mask = None if query_groups is None else query_groups[s:s + QUERY_CHUNK, None] == bank_groups[None, :]
        out[s:s + QUERY_CHUNK] = nearest(query[s:s + QUERY_CHUNK].float(), bank, mask)
    return out


def build(normal_maps: torch.Tensor, normal_groups: torch.Tensor, size: int, seed: int = 0
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The bank from normal glands' maps ``[B, C, h, w]`` (``normal_groups`` ``[B]``: each image's patient):
    ``(bank [M, C], bank_groups [M])``, a coreset of ``size`` of the cells (chosen from a seeded sample of
    ``MAX_CANDIDATES`` beyond that). Raises ValueError without normal images."""
    if len(normal_maps) == 0:
        raise ValueError("the normal reference needs images of normal glands (side or scan labels)")
    x = cells(normal_maps)
    groups = normal_groups.repeat_interleave(normal_maps.shape[2] * normal_maps.shape[3])
    candidates = torch.arange(len(x))
    if len(x) > MAX_CANDIDATES:  # hundreds of patients: the coreset's greedy passes stay minutes, not hours
        candidates = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:MAX_CANDIDATES]
    keep = candidates[coreset(x[candidates], size, seed)]
    return x[keep].contiguous(), groups[keep].contiguous()


def distances(maps: torch.Tensor, bank: torch.Tensor, groups: torch.Tensor | None = None,
              bank_groups: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, 1, h, w]``: each cell's distance to the bank (``groups`` ``[B]``: leave each image's own patient
    out; an inf from a patient alone in the bank reads as the largest finite distance)."""
    b, _, h, w = maps.shape
    g = None if groups is None else groups.repeat_interleave(h * w)
    d = nearest_distance(cells(maps), bank, g, bank_groups)
    finite = d[torch.isfinite(d)]
    d = torch.where(torch.isfinite(d), d, finite.max() if len(finite) else torch.tensor(0.0))
    return d.reshape(b, h, w)[:, None].to(maps.dtype)


def normal_scale(normal_distances: torch.Tensor) -> float:
    """The distance that reads 1: the median of the normal cells' own (leave-own-patient-out) distances, so the
    channel reads about 1 for normal anatomy (1.0 without any)."""
    d = normal_distances.flatten()
    return max(float(d.median()), 1e-6) if len(d) else 1.0


def patient_ids(names: list[str]) -> tuple[torch.Tensor, dict[str, int]]:
    """Integer ids ``[N]`` for patient names (for :func:`nearest_distance`'s groups)."""
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(n, len(index)) for n in names], np.int64)
    return torch.from_numpy(ids), index
