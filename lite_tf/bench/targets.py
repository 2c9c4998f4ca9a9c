"""The figures a benchmark run is judged by, as lines for its summary (and the README).

LITE's claims: its memory stays flat as N grows; full back-propagation needs several times more at
the same N; a LITE step costs what its two parts cost (overhead ratio); and the input pipeline
delivers more images per second than a step consumes. Memory is the device's (results.peak_gib).
"""
from __future__ import annotations

from lite_tf.bench.results import peak_gib

FLAT_TARGET, FULL_TARGET, OVERHEAD_TARGET, PIPELINE_TARGET, REFERENCE_TARGET = 1.25, 3.0, 1.15, 2.0, 4.0


def _groups(rows: list) -> dict:
    """Step rows by (case, learner, backbone, dtype policy, queries): each a LITE-vs-full comparison."""
    groups: dict = {}
    for row in rows:
        if row["part"] == "step" and row["status"] == "ok":
            key = tuple(row.get(name) for name in ("case", "learner", "backbone", "dtype_policy", "query_size"))
            groups.setdefault(key, []).append(row)
    return groups


def _step_lines(rows: list) -> list:
    lines = []
    for lite_h in sorted({row["h"] for row in rows if row["mode"] == "lite"}):
        lite = {row["support_size"]: peak_gib(row) for row in rows if row["mode"] == "lite" and row["h"] == lite_h}
        label = "LITE" if len({row["h"] for row in rows if row["mode"] == "lite"}) == 1 else f"LITE h={lite_h}"
        if len(lite) >= 2:
            small, large = min(lite), max(lite)
            ratio = lite[large] / max(lite[small], 1e-9)
            lines.append(f"{label} memory N={large} / N={small}: {ratio:.2f}x "
                         f"({'PASS' if ratio <= FLAT_TARGET else 'FAIL'}: flat means <= {FLAT_TARGET:g}x)")
        ratios = [row["overhead_ratio"] for row in rows
                  if row["mode"] == "lite" and row["h"] == lite_h and row.get("overhead_ratio") is not None]
        if ratios:
            worst = max(ratios)
            lines.append(f"{label}: largest overhead ratio {worst:.3f} "
                         f"({'PASS' if worst <= OVERHEAD_TARGET else 'FAIL'}: target <= {OVERHEAD_TARGET:g})")
    full = {row["support_size"]: peak_gib(row) for row in rows if row["mode"] == "full"}
    lite_hs = sorted({row["h"] for row in rows if row["mode"] == "lite"})
    if full and lite_hs:
        smallest = {row["support_size"]: peak_gib(row) for row in rows
                    if row["mode"] == "lite" and row["h"] == lite_hs[0]}
        common = sorted(set(full) & set(smallest))
        if common:
            n = common[0]
            ratio = full[n] / max(smallest[n], 1e-9)
            which = "LITE" if len(lite_hs) == 1 else f"LITE h={lite_hs[0]}"
            lines.append(f"full / {which} memory at N={n}: {ratio:.2f}x "
                         f"({'PASS' if ratio >= FULL_TARGET else 'FAIL'}: target >= {FULL_TARGET:g}x)")
    return lines


def _is_reference(row: dict) -> bool:
    return row.get("pipeline", "").startswith("reference")


def _reference_lines(rows: list) -> list:
    """lite_tf's images/s over Google's reference pipeline's, per number of sources and image size."""
    lines = []
    for row in rows:
        if _is_reference(row):
            continue
        for other in rows:
            if _is_reference(other) and (other["sources"], other["image_size"]) == (row["sources"], row["image_size"]):
                ratio = row["images_per_s"] / max(other["images_per_s"], 1e-9)
                lines.append(f"{row['pipeline']} ({row['image_dtype']}) / {other['pipeline']}, {row['sources']} "
                             f"source(s) at {row['image_size']} px: {ratio:.2f}x images/s "
                             f"({'PASS' if ratio >= REFERENCE_TARGET else 'FAIL'}: target >= {REFERENCE_TARGET:g}x)")
    return lines


def _export_lines(rows: list) -> list:
    """The transfer-learning baseline's personalisation time over each meta-learner's, same px and N."""
    lines = []
    done = [row for row in rows if row["part"] == "export" and row["status"] == "ok"]
    for base in (row for row in done if row["learner"] == "finetuner"):
        for row in done:
            if row["learner"] == "finetuner" or row["image_size"] != base["image_size"]:
                continue
            for n, seconds in row["personalize_s"].items():
                if n in base["personalize_s"]:
                    ratio = base["personalize_s"][n] / max(seconds, 1e-9)
                    lines.append(f"personalisation at {row['image_size']} px, N={n}: finetuner "
                                 f"({base['backbone']}) / {row['learner']} ({row['backbone']}) = {ratio:.2f}x")
    return lines


def summary(rows: list) -> list:
    lines = _export_lines(rows)
    groups = _groups(rows)
    for key, group in groups.items():
        prefix = "" if len(groups) == 1 else f"{key[0]} {key[1]} ({key[3]}, {key[4]} queries): "
        lines += [prefix + line for line in _step_lines(group)]
    finished = [row for row in rows if row["part"] == "pipeline" and row["status"] == "ok"]
    pipelines = [row for row in finished if not _is_reference(row)]
    lines += _reference_lines(finished)
    consumed = [row for row in rows if row["part"] == "step" and row["status"] == "ok"]
    for size in sorted({row["image_size"] for row in pipelines}):
        supply = min(row["images_per_s"] for row in pipelines if row["image_size"] == size)
        hungry = [row for row in consumed if row["image_size"] == size]
        if not hungry:
            continue
        demand = max(hungry, key=lambda row: row["images_per_s"])
        ratio = supply / demand["images_per_s"]
        lines.append(f"pipeline delivers {supply:.0f} images/s at {size} px (slowest case); the hungriest step "
                     f"({demand['learner']} {demand['mode']} N={demand['support_size']}) consumes "
                     f"{demand['images_per_s']:.1f}: {ratio:.1f}x "
                     f"({'PASS' if ratio >= PIPELINE_TARGET else 'FAIL'}: target >= {PIPELINE_TARGET:g}x)")
    return lines
