"""The results as JSON (everything, raw repeats included) and as a markdown table.

``python -m benchmarks.report benchmarks/results/cpu-ci.json`` prints the short table for
the project README from a results file; ``--markdown`` rewrites the file's .md report instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from . import TORCH_INSTALL


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def number(value: float | None) -> str:
    """3 significant digits, thousands separated: 9,812 / 151 / 2.43 / 0.0123."""
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def spread(side: dict[str, Any] | None) -> str:
    if side is None:
        return "—"
    return f"{number(side['median'])} ({number(side['min'])}–{number(side['max'])})"


NOISY_SPREAD = 1.5  # max/min of one side's repeats above which a row is flagged
OTHER_CPUS_LIMIT = 0.25  # CPUs other processes kept busy during a case above which it is flagged


def _busy_elsewhere(case: dict[str, Any], cpus: int) -> bool:
    """Other processes used the CPUs during the case (older results: the load average rule)."""
    if case.get("id") == "memory":  # a peak RSS does not depend on them
        return False
    if case.get("other_cpus") is not None:
        return case["other_cpus"] > OTHER_CPUS_LIMIT
    load = case.get("load_average_1min")
    return load is not None and load > 0.5 * cpus


def disturbed(case: dict[str, Any], cpus: int) -> bool:
    """Whether a timing is suspect: a wide spread, or other processes busy on the CPUs meanwhile."""
    wide = any(side is not None and side["max"] > NOISY_SPREAD * side["min"] for side in (case["xpnet"], case["torch"]))
    return wide or _busy_elsewhere(case, cpus)


def ratio_cell(case: dict[str, Any], cpus: int = 1) -> str:
    if case.get("efficiency") is not None:  # the data-parallel case: 2-rank images/s over twice 1 process's
        return f"scaling efficiency **{case['efficiency']:.2f}**" + (" ⚠" if disturbed(case, cpus) else "")
    if case.get("ratio") is None:
        return "—"
    return f"**{case['ratio']:.2f}**" + (" ⚠" if disturbed(case, cpus) else "")


def _cpu_lines(m: dict[str, Any]) -> list[str]:
    """The CPU kind and the BLAS kernel, where the results record them (older files do not)."""
    if "cpu_kind" not in m:
        return []
    kind = m["cpu_kind"]
    forced = f", forced by OPENBLAS_CORETYPE={m['openblas_coretype_env']}" if m.get("openblas_coretype_env") else ""
    return [f"- CPU kind: {kind['vendor']} family {kind['family']} model {kind['model']}, {kind['isa']}; "
            f"OpenBLAS kernel {m.get('blas_kernel') or 'unknown'} ({m.get('blas_kernel_source') or 'not found'}"
            f"{forced})"]


def _header(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    torch = (f"torch {m['torch']} (`torch.set_num_threads({m['torch_threads']})`, matching numpy's "
             f"{m['blas_threads']} BLAS threads)") if m["torch"] else "PyTorch not installed"
    load = m.get("load_average_start"), m.get("load_average_end")
    lines = [
        f"# xpnet vs PyTorch: {m['device']} ({results['label']})",
        "",
        f"- command: `{results['command']}` on {m['date_utc']}",
        f"- machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable), "
        f"{m['platform']}, Python {m['python']}" + (f"; GPU {m['gpu']}" if m.get("gpu") else ""),
        *_cpu_lines(m),
        f"- software: xpnet {m['xpnet']}" + (f" (git {m['xpnet_git']})" if m["xpnet_git"] else "")
        + f" · numpy {m['numpy']} with {m['blas']} ({m['blas_threads']} threads) · {torch}",
    ]
    others = [c["other_cpus"] for c in results["cases"] if c.get("other_cpus") is not None]
    if all(load):
        lines.append(f"- load average (1 min, the benchmark's own threads included) at start / end: "
                     f"{load[0][0]} / {load[1][0]}")
    if others:
        lines.append(f"- CPU time of other processes during the cases: {min(others)}–{max(others)} CPUs on average"
                     + ("; some rows were disturbed (⚠)" if max(others) > OTHER_CPUS_LIMIT else " (an idle machine)"))
    peak = results.get("gemm_peak_gflops", {})
    if peak:
        s = results["settings"]
        lines.append(f"- GEMM peak (float32 {s['gemm_size']}x{s['gemm_size']} matmul, best of {s['gemm_repeats']} "
                     "before and after the convolutions): "
                     + ", ".join(f"{k} {number(v)} GFLOP/s" for k, v in peak.items()))
    lines.extend(f"- note: {note}" for note in results.get("notes", []))
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The report: header, main table, convolution table, memory details."""
    cases = results["cases"]
    repeats = results["settings"]["repeats"]
    lines = _header(results) + [
        "",
        f"Median of {repeats} repeats (min–max); xpnet and PyTorch repeats alternate. "
        "**xpnet/PyTorch** is a throughput ratio: above 1 means xpnet is faster (for rows in ms it is "
        "PyTorch ms / xpnet ms). For memory it is xpnet's peak / PyTorch's peak: below 1 means xpnet uses less.",
        "",
        "| case | unit | xpnet | PyTorch | xpnet/PyTorch |",
        "|---|---|---:|---:|---:|",
    ]
    cpus = results["machine"]["usable_cpus"]
    for case in cases:
        title = f"{case['title']} ({case['detail']})" if case.get("detail") else case["title"]
        lines.append(f"| {title} | {case['unit']} | {spread(case['xpnet'])} | {spread(case['torch'])} | "
                     f"{ratio_cell(case, cpus)} |")
    if any(disturbed(case, cpus) for case in cases if case.get("ratio") is not None):
        lines += ["", f"⚠ disturbed: one side's repeats spread more than {NOISY_SPREAD}x (max/min), or other "
                  f"processes kept more than {OTHER_CPUS_LIMIT} CPUs busy on average during the case; re-run "
                  "that row on an idle machine."]
    convs = [c for c in cases if c["id"].startswith("conv")]
    if convs:
        base = next(iter(results.get("gemm_peak_gflops", {})), "GEMM")
        lines += [
            "",
            "Convolutions, forward + backward. GFLOP per call counts the three GEMMs (forward, weight "
            "gradient, input gradient), each 2·N·C_out·C_in·KH·KW·OH·OW; bias, padding, im2col/col2im "
            f"and the bias gradient are not counted. The share is of the {base} GEMM peak above.",
            "",
            "| case | GFLOP per call | xpnet GFLOP/s | PyTorch GFLOP/s | xpnet % of peak | PyTorch % of peak |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for c in convs:
            share = c.get("peak_share", {})
            pct = lambda v: "—" if v is None else f"{100 * v:.0f}%"  # noqa: E731
            lines.append(f"| {c['title']} | {number(c['flop_per_call'] / 1e9)} | {number(c['gflops']['xpnet'])} | "
                         f"{number(c['gflops'].get('torch'))} | {pct(share.get('xpnet'))} | "
                         f"{pct(share.get('torch'))} |")
        if any(v > 1 for c in convs for v in c.get("peak_share", {}).values()):
            lines += ["", "A share above 100% means the GEMM peak runs were slowed by other processes."]
    memory = next((c for c in cases if c["id"] == "memory"), None)
    if memory is not None:
        base = memory["baseline_rss_mib"]
        parts = [f"{label} {number(base[key])} MiB (training adds {number(memory[key]['median'] - base[key])} MiB)"
                 for key, label in (("xpnet", "xpnet"), ("torch", "PyTorch")) if base.get(key) is not None]
        lines += ["", "Memory: peak resident set size (VmHWM) of a fresh process training LeNet-5 with SGD "
                  f"({memory['batches']} batches of {results['settings']['train_batch']}). Before the model is "
                  "built, with the imports and the data loaded, the processes hold " + ", ".join(parts) + "."]
    if results["machine"]["torch"] is None:
        lines += ["", "PyTorch is not installed, so xpnet ran alone. To compare, install a CPU build: "
                  f"`{TORCH_INSTALL}`"]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], folder: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.json`` and ``stem.md`` into ``folder``; return both paths."""
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    write_atomic(json_path, json.dumps(results, indent=2) + "\n")
    write_atomic(md_path, markdown(results))
    return json_path, md_path


def readme_table(results: dict[str, Any], source: str = "") -> str:
    """The short table for the project README: medians and ratios, plus where they came from."""
    m = results["machine"]
    torch = f"PyTorch {m['torch'].split('+')[0]}" if m["torch"] else "PyTorch"
    lines = [f"| benchmark | xpnet | {torch} | xpnet/PyTorch |", "|---|---:|---:|---:|"]
    def cell(side: dict[str, Any] | None, unit: str) -> str:
        return "—" if side is None else f"{number(side['median'])} {unit}"
    for case in results["cases"]:
        ratio = "—" if case.get("ratio") is None else f"{case['ratio']:.2f}"
        ratio += " ⚠" if case.get("ratio") is not None and disturbed(case, m["usable_cpus"]) else ""
        if case["id"] == "memory" and case.get("ratio") is not None:
            ratio += " (lower is better)"
        title = case["title"]
        sides = " | ".join(cell(case[name], case["unit"]) for name in ("xpnet", "torch"))
        lines.append(f"| {title} | {sides} | {ratio} |")
    where = f" (full table: `{source}`)" if source else ""
    lines += ["", f"`{results['command']}` on {m['date_utc'][:10]}: {m['cpu_model']}, {m['usable_cpus']} cores, "
              f"numpy {m['numpy']} with {m['blas']}, {torch} with {m['torch_threads']} threads; "
              f"medians of {results['settings']['repeats']} alternating repeats{where}. "
              "Ratios above 1 mean xpnet is faster (memory: below 1 means xpnet uses less)."]
    return "\n".join(lines) + "\n"


def _main(argv: list[str]) -> int:
    """Print the README table of each results file; with --markdown, rewrite its .md report from the JSON."""
    rewrite = "--markdown" in argv
    names = [a for a in argv if a != "--markdown"] or [str(Path(__file__).parent / "results" / "cpu-ci.json")]
    for name in names:
        path = Path(name)
        results = json.loads(path.read_text())
        if rewrite:
            write_atomic(path.with_suffix(".md"), markdown(results))
            print(f"rewrote {path.with_suffix('.md')}")
        else:
            print(readme_table(results, str(path.with_suffix(".md"))))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
