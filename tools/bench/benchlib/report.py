"""Results: medians, ratios, the text table, JSON and an SVG chart of the ratios."""

import json
import math
import statistics
from xml.sax.saxutils import escape


class Results:
    def __init__(self, targets, workloads):
        self.targets = targets          # [Target], in report order (set up or not)
        self.workloads = workloads      # [Workload]
        self.runs = {}                  # metric key -> target name -> [values]
        self.details = []               # [{target, workload, rep, details}]
        self.failures = []              # [{target, workload, rep, error}]
        self.memory = {}                # target name -> {process: {VmHWM, VmRSS}}
        self.skipped = {}               # target name -> why it was left out (packages)

    def metrics(self):
        return [(w, m) for w in self.workloads for m in w.metrics]

    def add(self, target, workload, rep, values, details):
        for key, value in values.items():
            self.runs.setdefault(key, {}).setdefault(target, []).append(value)
        self.details.append({"target": target, "workload": workload, "rep": rep,
                             "details": details})

    def fail(self, target, workload, rep, error):
        self.failures.append({"target": target, "workload": workload, "rep": rep,
                              "error": str(error)})

    def median(self, key, target):
        values = self.runs.get(key, {}).get(target)
        return statistics.median(values) if values else None

    def groups(self):
        """[(group, [Target])] in report order."""
        out = {}
        for t in self.targets:
            out.setdefault(t.group, []).append(t)
        return list(out.items())

    def ratio_columns(self, group=None):
        """[(label, subject, other)] for each subject and each peer/limit of its group."""
        cols = []
        names = [t.name for t in self.targets]
        for s in self.targets:
            if s.role != "subject" or (group is not None and s.group != group):
                continue
            for role in ("peer", "limit"):
                for o in self.targets:
                    if o.group == s.group and o.role == role and o.name in names:
                        cols.append((f"{s.name}/{o.name}", s.name, o.name))
        return cols

    def ratio(self, metric, subject, other):
        a, b = self.median(metric.key, subject), self.median(metric.key, other)
        if not a or not b:
            return None
        return a / b if metric.higher_is_better else b / a


def _num(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio_text(v):
    """Two decimals, or two significant digits for ratios below 0.1 (0.0042, not 0.00)."""
    return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"


def _ratio(v):
    return "-" if v is None else ratio_text(v) + "x"


def _group_table(results, targets, cols):
    names = [t.name for t in targets]
    head = ["metric", "unit"] + names + [c[0] for c in cols]
    rows = []
    for _, m in results.metrics():
        row = [m.label, m.unit]
        row += [_num(results.median(m.key, n)) for n in names]
        row += [_ratio(results.ratio(m, s, o)) for _, s, o in cols]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]

    def fmt(r):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(r[2:], widths[2:])]
        return "  ".join(cells).rstrip()

    return [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


def table(results, title):
    """One table per group of targets (its targets' medians, its subject's ratios)."""
    lines = [title]
    groups = results.groups()
    for i, (group, targets) in enumerate(groups):
        if len(groups) > 1:
            lines += ([""] if i else []) + [f"{group} mounts:"]
        lines += _group_table(results, targets, results.ratio_columns(group))
    lines.append("(medians; every figure is a rate, higher is better; ratio > 1: "
                 "the subject is faster)")
    mem = memory_lines(results)
    if mem:
        lines.append("")
        lines += mem
    return "\n".join(lines + problem_lines(results))


def problem_lines(results):
    """The targets left out and the failures, each block after an empty line."""
    lines = []
    if results.skipped:
        lines.append("")
        lines.append(f"SKIPPED TARGETS ({len(results.skipped)}), not measured:")
        for name, why in results.skipped.items():
            lines.append(f"  {name}: {why}")
    if results.failures:
        lines.append("")
        lines.append(f"FAILURES ({len(results.failures)}):")
        for f in results.failures:
            lines.append(f"  {f['target']} / {f['workload']} (run {f['rep']}): {f['error']}")
    return lines


def memory_lines(results):
    rows = [(f"{proc} ({target})", m) for target, procs in results.memory.items()
            for proc, m in procs.items() if "VmHWM" in m]
    width = max([30] + [len(label) for label, _ in rows])
    lines = [f"  {label:<{width}} peak RSS {m['VmHWM'] / 1024:7.1f} MiB   (at the end: "
             f"{m.get('VmRSS', 0) / 1024:.1f} MiB)" for label, m in rows]
    if lines:
        lines.insert(0, "memory (VmHWM = peak resident set over the whole run, read at its end):")
    return lines


def to_json(results, meta):
    cols = results.ratio_columns()
    out = dict(meta)
    out["targets"] = {t.name: {"group": t.group, "role": t.role, "description": t.description,
                               "ready": getattr(t, "ready", False),
                               "info": getattr(t, "info_data", {})}
                      for t in results.targets}
    out["metrics"] = [{"key": m.key, "workload": w.name, "label": m.label, "unit": m.unit,
                       "higher_is_better": m.higher_is_better} for w, m in results.metrics()]
    out["results"] = {
        m.key: {t: {"runs": v, "median": statistics.median(v)}
                for t, v in results.runs.get(m.key, {}).items()}
        for _, m in results.metrics()}
    out["ratios"] = {m.key: {label: results.ratio(m, s, o) for label, s, o in cols}
                     for _, m in results.metrics()}
    out["memory_kib"] = results.memory
    out["skipped"] = results.skipped
    out["details"] = results.details
    out["failures"] = results.failures
    return json.dumps(out, indent=2, sort_keys=False)


def svg(results, title):
    """Horizontal bars of the subject's ratios on a log scale centred on 1 (parity)."""
    cols = results.ratio_columns()
    palette = ["#3b6fb6", "#e08a2c", "#4a9a5b", "#a34f9a"]
    rows = []
    for _, m in results.metrics():
        rows.append((m.label, [results.ratio(m, s, o) for _, s, o in cols]))
    values = [v for _, vs in rows for v in vs if v]
    lo_exp = math.floor(math.log10(min(values + [0.5]) / 2.5))   # room for the value labels
    hi_exp = math.ceil(math.log10(max(values + [2.0])))
    lo_exp, hi_exp = min(lo_exp, -1), max(hi_exp, 1)

    label_w, plot_w, right = 250, 560, 70
    width = label_w + plot_w + right
    # The legend: entries laid out by their label length (~7 px a character), wrapped at the
    # right edge; the plot starts below it.
    legend, lx, ly = [], 10, 48
    for i, (label, _, _) in enumerate(cols):
        w = 16 + 7 * len(label) + 24     # swatch, text, gap
        if lx > 10 and lx + w > width:
            lx, ly = 10, ly + 16
        legend.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" '
                      f'fill="{palette[i % 4]}"/><text x="{lx + 16}" y="{ly + 10}">'
                      f'{escape(label)}</text>')
        lx += w
    bar_h, gap, top = 13, 10, ly + 22
    row_h = bar_h * max(1, len(cols)) + gap
    height = top + row_h * len(rows) + 50

    def x(v):
        return label_w + plot_w * (math.log10(v) - lo_exp) / (hi_exp - lo_exp)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
           f'<text x="10" y="38" fill="#555">ratio of medians, log scale; right of 1 = '
           f'the subject ({escape(", ".join(sorted({c[1] for c in cols})) or "none")}) '
           f'faster</text>']
    out += legend
    bottom = top + row_h * len(rows)
    for e in range(lo_exp, hi_exp + 1):
        for mult in (1, 2, 5):
            v = mult * 10 ** e
            if v > 10 ** hi_exp:
                continue
            gx = x(v)
            stroke = "#999" if mult == 1 else "#e4e4e4"
            out.append(f'<line x1="{gx:.1f}" y1="{top - 4}" x2="{gx:.1f}" y2="{bottom}" '
                       f'stroke="{stroke}"/>')
            if mult == 1 or (hi_exp - lo_exp) <= 2:
                out.append(f'<text x="{gx:.1f}" y="{bottom + 16}" text-anchor="middle" '
                           f'fill="#555">{v:g}</text>')
    one = x(1)
    out.append(f'<line x1="{one:.1f}" y1="{top - 8}" x2="{one:.1f}" y2="{bottom}" '
               f'stroke="black" stroke-width="1.5"/>')
    for r, (label, vals) in enumerate(rows):
        y0 = top + r * row_h
        out.append(f'<text x="{label_w - 8}" y="{y0 + row_h / 2:.1f}" text-anchor="end" '
                   f'dominant-baseline="middle">{escape(label)}</text>')
        for i, v in enumerate(vals):
            y = y0 + i * bar_h
            if not v:
                out.append(f'<text x="{one + 4:.1f}" y="{y + bar_h - 3}" fill="#999">n/a</text>')
                continue
            xv = min(max(x(v), label_w), label_w + plot_w)
            bx, bw = min(one, xv), abs(xv - one)
            out.append(f'<rect x="{bx:.1f}" y="{y}" width="{max(bw, 1):.1f}" '
                       f'height="{bar_h - 2}" fill="{palette[i % 4]}"/>')
            tx, anchor = (xv + 4, "start") if v >= 1 else (xv - 4, "end")
            out.append(f'<text x="{tx:.1f}" y="{y + bar_h - 3}" text-anchor="{anchor}" '
                       f'font-size="10">{ratio_text(v)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
