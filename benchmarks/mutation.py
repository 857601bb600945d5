"""Mutation testing of the science and integrity modules (``make mutation``; not part of ``make test``).

Runs mutmut (configured in ``pyproject.toml``: which modules, which unit tests) over all or some
mutants, then writes ``benchmarks/results/mutation.json``: the score per module and overall,
every surviving mutant with its diff, and the mutants judged *equivalent* (no test can tell them
apart from the original), each with the rule or the explicit reason that makes it so
(``benchmarks/mutation_equivalents.yaml``).

    python benchmarks/mutation.py                      # everything (about an hour on 2 cores)
    python benchmarks/mutation.py "lensaudit.survey.*"  # some modules (fnmatch patterns on mutant names)
    python benchmarks/mutation.py --report-only         # re-read the results of earlier runs

A run resets mutmut's own results when its test selection changes, so every verdict is also kept in
``benchmarks/results/mutation_ledger.json`` (per mutated function: the hash of its source, as mutmut
computes it, and one letter per mutant). A mutant this run did not check takes its ledger verdict while its
function's source is unchanged; an edited function's verdicts are dropped and it reads "not checked".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "mutation.json"
EQUIV = ROOT / "benchmarks" / "mutation_equivalents.yaml"
LEDGER = ROOT / "benchmarks" / "results" / "mutation_ledger.json"
#: modules whose unchecked mutants stand as a seeded random sample (drawn, with its test and power, before it ran)
SAMPLES = ROOT / "benchmarks" / "mutation_samples.json"
#: one letter per mutmut status in the ledger
CODE = {"killed": "k", "survived": "s", "no tests": "n", "timeout": "t", "not checked": ".", "suspicious": "?",
        "skipped": "-", "caught by type check": "c", "check was interrupted by user": "i", "segfault": "x"}
STATUS = {v: k for k, v in CODE.items()}
MUTMUT = [sys.executable, "-m", "mutmut"]


#: Modules of stage 5 and later (issue 32's scope) that ``make mutation`` does not mutate, and why: they compute
#: nothing the audit reports; what they wire together is mutated in the modules they call, and end-to-end tests
#: (``make test``) run each of them.
NOT_MUTATED = {
    "lensaudit.*.cli": "command-line parsing and printing: each command is run by the CLI tests",
    "lensaudit.*.figures": "matplotlib drawing of tables already computed (and tested) elsewhere; the report's "
                           "render test looks at them",
    "lensaudit.selection.examples": "picks example cutouts for the report's figures",
    "lensaudit.selection.exchange": "the offline exchange's export: writes the cutouts a run would score (the "
                                    "injections come from selection.run's functions, mutated; the scores file's "
                                    "checks are selection.scores_file, mutated); run end to end by tests/test_scoring",
    "lensaudit.validation.run": "orchestration of whole universes (mock, training, selection run, closure: minutes "
                                "per mutant); its numbers come from validation.matrix and selection.closure, mutated",
    "lensaudit.ensemble.run": "orchestration of member training and scoring (minutes per mutant); its numbers come "
                              "from ensemble.combine, .metrics, .domains and .selection, mutated",
}


def _module(name: str) -> str:
    """``lensaudit.cutouts.store.xǁCutoutStoreǁverify__mutmut_3`` -> ``lensaudit.cutouts.store``."""
    head = name.split("__mutmut_")[0]
    parts = head.split(".")
    while parts and (parts[-1].startswith("x_") or "ǁ" in parts[-1]):
        parts.pop()
    return ".".join(parts)


def results() -> dict[str, str]:
    out = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True)
    res = {}
    for line in out.stdout.splitlines():
        if ": " in line:
            name, status = line.strip().rsplit(": ", 1)
            res[name] = status.strip()
    return res


def function_hashes() -> dict[str, str]:
    """``module.function`` -> the hash mutmut keeps of the function's source (``mutants/**/*.meta``)."""
    out = {}
    src = ROOT / "mutants" / "src"
    for meta in src.rglob("*.py.meta"):
        mod = ".".join(meta.relative_to(src).with_suffix("").with_suffix("").parts)
        for fn, h in json.loads(meta.read_text()).get("hash_by_function_name", {}).items():
            out[f"{mod}.{fn}"] = h
    return out


def with_ledger(res: dict[str, str], hashes: dict[str, str], ledger: dict) -> tuple[dict[str, str], dict]:
    """(statuses with unchecked mutants filled from the ledger where their function is unchanged, the new
    ledger)."""
    out = dict(res)
    for name, st in res.items():
        fn, num = name.rsplit("__mutmut_", 1)
        e = ledger.get(fn)
        if st == "not checked" and e and e["hash"] and e["hash"] == hashes.get(fn) and int(num) <= len(e["status"]):
            out[name] = STATUS.get(e["status"][int(num) - 1], "not checked")
    by_fn: dict[str, dict[int, str]] = defaultdict(dict)
    for name, st in out.items():
        fn, num = name.rsplit("__mutmut_", 1)
        by_fn[fn][int(num)] = st
    new = {fn: {"hash": hashes.get(fn), "status": "".join(CODE.get(by.get(i, "not checked"), ".")
                                                          for i in range(1, max(by) + 1))}
           for fn, by in sorted(by_fn.items()) if any(v != "not checked" for v in by.values())}
    return out, new


def sampled_estimate(rec: dict, statuses: dict[str, str], equivalent_names: set[str],
                     hashes: dict[str, str], module: str) -> dict:
    """A module's score estimated from its census (mutants outside the sample's population, each checked) and a
    random sample of the population, with the test stated in ``rec`` (``benchmarks/mutation_samples.json``).

    ``statuses``: every mutant's status in this report; ``equivalent_names``: mutants judged equivalent. The
    sample's survivors count with their *first-pass* verdicts (``rec["first_pass"]``, kept from the first report
    in which the whole sample was checked), so tests written afterwards for the sample's own survivors do not
    lower the estimated survivor rate of the mutants nobody ran. Returns the figures and ``passes``."""
    from scipy.stats import beta

    stale = sorted(fn for fn, h in rec["function_hashes"].items() if hashes.get(f"{module}.{fn}") != h)
    if stale:
        return {"status": "stale: the source of these functions changed after the draw", "functions": stale}
    pop, sample = set(rec["population"]), list(rec["sample"])
    first = rec.get("first_pass") or {}
    verdict = {m: first.get(m, statuses.get(m, "not checked")) for m in sample}
    pending = [m for m, v in verdict.items() if v == "not checked"]
    census = Counter()
    for name, st in statuses.items():
        if _module(name) != module or name in pop or st == "not checked":
            continue
        census["equivalent" if name in equivalent_names and st in ("survived", "no tests")
               else "killed" if st in ("killed", "timeout") else "survived"] += 1
    k = sum(v in ("killed", "timeout") for v in verdict.values())
    e = sum(v in ("survived", "no tests") and m in equivalent_names for m, v in verdict.items())
    sv = sum(v in ("survived", "no tests") and m not in equivalent_names for m, v in verdict.items())
    n_pop, n, m = len(pop), len(sample), k + sv
    out = {"population": n_pop, "sample": n, "seed": rec["seed"], "census_killed": census["killed"],
           "census_survived": census["survived"], "census_equivalent": census["equivalent"],
           "sample_killed": k, "sample_survived_first_pass": sv, "sample_equivalent": e, "sample_pending": len(pending)}
    if pending or not m:
        return {**out, "status": f"{len(pending)} sampled mutant(s) not checked yet", "passes": None}
    r_up = float(beta.ppf(0.95, sv + 1, m - sv)) if sv < m else 1.0
    n_ne = n_pop * m / n
    kc, sc = census["killed"], census["survived"]
    est = (kc + n_ne * k / m) / (kc + sc + n_ne)
    low = (kc + n_ne * (1 - r_up)) / (kc + sc + n_ne)
    return {**out, "survivor_rate_upper95": round(r_up, 4), "score_estimate": round(est, 4),
            "score_lower95": round(low, 4), "passes": bool(low >= 0.90), "status": "complete"}


def diff(name: str) -> list[str]:
    out = subprocess.run([*MUTMUT, "show", name], cwd=ROOT, capture_output=True, text=True)
    return [ln for ln in out.stdout.splitlines() if ln[:1] in "+-" and not ln.startswith(("---", "+++"))]


def _without_strings(line: str) -> str:
    """The line with its string literals removed and argument separators normalised: two lines equal under it
    differ only in a string argument (changed or left out)."""
    s = re.sub(r'"[^"]*"', "", line)
    s = re.sub(r"[\s,]+", ",", s)
    return re.sub(r",\)", ")", re.sub(r"\(,", "(", s))


def _without_kwargs(line: str, names: list[str]) -> str:
    """The line with every ``name=value`` argument of ``names`` removed (value: a balanced expression up to the
    next comma or closing bracket at its own depth) and separators normalised as in :func:`_without_strings`."""
    out, i = [], 0
    pat = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")=")
    while True:
        m = pat.search(line, i)
        if not m:
            out.append(line[i:])
            break
        out.append(line[i:m.start()])
        j, depth = m.end(), 0
        while j < len(line):
            ch = line[j]
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                if depth == 0:
                    break
                depth -= 1
            elif ch == "," and depth == 0:
                break
            j += 1
        i = j
    s = re.sub(r"[\s,]+", ",", "".join(out))
    return re.sub(r",\)", ")", re.sub(r"\(,", "(", s)).strip(",")


def equivalent(name: str, lines: list[str], rules: dict) -> str | None:
    """The reason a mutant is equivalent, or None."""
    explicit = rules.get("mutants", {}) or {}
    if name in explicit:
        return explicit[name]
    minus = [ln[1:].strip() for ln in lines if ln.startswith("-")]
    plus = [ln[1:].strip() for ln in lines if ln.startswith("+")]
    if len(minus) != 1 or len(plus) != 1:
        return None
    for rule in rules.get("rules", []) or []:
        if not re.search(rule.get("module", "."), name):
            continue
        a, b = minus[0], plus[0]
        if "line" in rule and not re.search(rule["line"], a):
            continue
        if rule.get("kind") == "case_only":
            if a != b and a.lower() == b.lower() and re.search(rule.get("within", "."), a):
                return rule["reason"]
        elif rule.get("kind") == "regex":
            if re.fullmatch(rule["before"], a) and re.fullmatch(rule["after"], b):
                return rule["reason"]
        elif rule.get("kind") == "display_kwargs":
            if a != b and _without_kwargs(a, rule["names"]) == _without_kwargs(b, rule["names"]):
                return rule["reason"]
        elif rule.get("kind") == "label_only":
            if a != b and _without_strings(a) == _without_strings(b):
                return rule["reason"]
    return None


def markdown_table(report: dict, prefixes: list[str]) -> str:
    """The README's table of module scores from a mutation report (modules whose dotted name after ``lensaudit.``
    starts with one of ``prefixes``; all when none is given)."""
    rows = ["| module | killed | equivalent | survived / no tests | score |", "|---|---|---|---|---|"]
    for mod, m in report["modules"].items():
        short = mod.removeprefix("lensaudit.")
        if prefixes and not short.startswith(tuple(prefixes)):
            continue
        score = "not measured" if m.get("score") is None else f"{m['score']:.3f}"
        if m.get("not_checked"):
            score += f" ({m['not_checked']} not checked)"
        smp = m.get("sampled") or {}
        if smp.get("status") == "complete":
            score += (f"; {smp['sample']} of the {smp['population']} unchecked drawn at random: estimate "
                      f"{smp['score_estimate']:.3f}, 95% lower bound {smp['score_lower95']:.3f}")
        rows.append(f"| `{short.replace('.', '/')}` | {m.get('killed', 0)} | {m.get('equivalent', 0)} | "
                    f"{m.get('survived', 0) + m.get('no_tests', 0)} | {score} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("patterns", nargs="*", help="mutant name patterns (fnmatch), e.g. 'lensaudit.survey.*'")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--max-children", type=int, default=None)
    ap.add_argument("--table", nargs="*", metavar="PREFIX",
                    help="print mutation.json's scores as a Markdown table (modules starting with PREFIX) and exit")
    a = ap.parse_args()
    if a.table is not None:
        print(markdown_table(json.loads(OUT.read_text()), a.table))
        return 0
    env = dict(os.environ)
    t0 = time.monotonic()
    if not a.report_only:
        cmd = [*MUTMUT, "run", *a.patterns]
        if a.max_children:
            cmd[len(MUTMUT) + 1:len(MUTMUT) + 1] = ["--max-children", str(a.max_children)]
        run = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False)
        if run.returncode == 2:   # click's usage error (its message is on stderr): keep the report as it was
            return 2
    rules = yaml.safe_load(EQUIV.read_text()) if EQUIV.exists() else {}
    ledger = json.loads(LEDGER.read_text()) if LEDGER.is_file() else {}
    hashes = function_hashes()
    res, new_ledger = with_ledger(results(), hashes, ledger)
    earlier = json.loads(OUT.read_text()) if OUT.is_file() else {}
    # a mutant's diff from the last report while its function's source is unchanged (`mutmut show` costs about
    # 0.4 s a mutant, most of a report's time)
    known = {x["mutant"]: x["diff"] for x in earlier.get("survivors", []) + earlier.get("equivalents", [])
             if "diff" in x and (ledger.get(x["mutant"].rsplit("__mutmut_", 1)[0]) or {}).get("hash")
             == hashes.get(x["mutant"].rsplit("__mutmut_", 1)[0]) is not None}

    def diff_of(name: str) -> list[str]:
        return known[name] if name in known else diff(name)

    if not res:
        sys.stderr.write("mutmut reports no mutants (no mutants/ folder?): mutation.json left as it was\n")
        return 2
    per = defaultdict(Counter)
    per_fn = defaultdict(Counter)          # module -> "function: status" counts (a partly measured module's detail)
    survivors, equivalents, stale = [], [], []
    named = set((rules.get("mutants") or {}))
    for name, status in sorted(res.items()):
        mod = _module(name)
        per_fn[mod][name.split("__mutmut_")[0][len(mod) + 1:] + ": " + status] += 1
        if status == "killed" or status == "timeout":
            per[mod]["killed"] += 1
            if name in named:   # a test kills a mutant listed as equivalent: the entry is wrong, or mutmut renumbered
                stale.append(name)
        elif status in ("survived", "no tests"):
            lines = diff_of(name)
            why = equivalent(name, lines, rules)
            if why:
                per[mod]["equivalent"] += 1
                equivalents.append({"mutant": name, "reason": why, "diff": lines})
            else:
                per[mod]["survived" if status == "survived" else "no_tests"] += 1
                survivors.append({"mutant": name, "status": status, "diff": lines})
        else:
            per[mod][status.replace(" ", "_")] += 1
    # a module this run did not reach keeps the figures of the run that measured it (with that run's time)
    modules = {}
    tot = Counter()
    for mod, c in sorted(per.items()):
        tested = c["killed"] + c["survived"] + c["no_tests"]
        if not tested and mod in earlier.get("modules", {}):
            modules[mod] = {**earlier["modules"][mod], "measured": earlier["modules"][mod].get("measured",
                                                                                                earlier.get("utc_time"))}
            survivors += [x for x in earlier.get("survivors", []) if _module(x["mutant"]) == mod]
            equivalents += [x for x in earlier.get("equivalents", []) if _module(x["mutant"]) == mod]
            c = Counter({k: v for k, v in modules[mod].items() if isinstance(v, int)})
        else:
            modules[mod] = {**c, "score": round(c["killed"] / tested, 4) if tested else None,
                            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            if c["not_checked"]:   # partly measured: which functions the score covers
                fns = defaultdict(dict)
                for key, n in sorted(per_fn[mod].items()):
                    fn, st = key.rsplit(": ", 1)
                    fns[fn][st] = n
                modules[mod]["functions"] = dict(fns)
        tot.update({k: v for k, v in c.items() if k in ("killed", "survived", "no_tests", "equivalent")})
    samples = json.loads(SAMPLES.read_text()) if SAMPLES.is_file() else {}
    equivalent_names = {x["mutant"] for x in equivalents}
    for mod, rec in samples.items():
        if rec.get("first_pass") is None and all(res.get(m, "not checked") != "not checked" for m in rec["sample"]):
            rec["first_pass"] = {m: res[m] for m in rec["sample"]}     # the whole sample checked: its first verdicts
            SAMPLES.write_text(json.dumps(samples, indent=1, ensure_ascii=False) + "\n")
        if mod in modules:
            modules[mod]["sampled"] = sampled_estimate(rec, res, equivalent_names, hashes, mod)
    tested = tot["killed"] + tot["survived"] + tot["no_tests"]
    report = {
        "tool": "mutmut " + subprocess.run([*MUTMUT, "--version"], capture_output=True, text=True).stdout.strip(),
        "definition": "score = killed / (killed + survived + no tests); equivalent mutants are listed with their "
                      "reason and left out of the score; 'not checked' are mutants no run has reached yet (a module with "
                      "some lists its functions' statuses: its score covers the checked ones only); a mutant "
                      "this run did not check keeps its verdict from mutation_ledger.json while its function's "
                      "source is unchanged",
        "overall": {**tot, "score": round(tot["killed"] / tested, 4) if tested else None},
        "modules": modules, "not_mutated": NOT_MUTATED, "survivors": survivors, "equivalents": equivalents,
        # named equivalents that a test kills: after an edit mutmut numbers a function's mutants anew, so a name can
        # come to mean another mutant; each listed here must be re-triaged (its reason may now cover a real survivor)
        "stale_named_equivalents": stale,
        "elapsed_s": round(time.monotonic() - t0, 1), "utc_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip() or None,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    LEDGER.write_text(json.dumps(new_ledger, indent=0, ensure_ascii=False) + "\n")
    print(json.dumps({"overall": report["overall"], "modules": modules}, indent=2))
    if stale:
        sys.stderr.write(f"{len(stale)} mutant(s) listed as equivalent are killed (stale names?): {stale[:10]}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
