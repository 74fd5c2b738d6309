"""The label-regex guard (rules/_regex.py): what it refuses, and the common matchers it must not.

The slow patterns and the adversarial values that make them slow come from a fuzzing session (each took 0.3 s
to for ever in ``re.fullmatch`` on at most 1,024 characters); the common ones are Alertmanager matchers as people
write them, each fast on every adversarial value the fuzzer tried. No timing here: only the verdicts.
"""

from __future__ import annotations

import pytest

from alphawatch.rules._regex import SlowRegex, compile_label_regex

COMMON = [
    "(?i)[a-z]+(-[a-z0-9]+)*",
    r"(?i)v[0-9]+(\.[0-9]+)*",
    "(?i)(foo|bar)+",
    "[[]",  # a literal [ (Python warns about nested sets; RE2 reads the same)
    ".*[[].*",
    "[a&&b]",
    "(prod|staging)-.*",
    "[a-z]+(-[a-z0-9]+)*",
    "v[0-9]+(\\.[0-9]+)*",
    "v?[0-9]+(\\.[0-9]+)*",
    "(\\d{1,3}\\.){3}\\d{1,3}",
    "([0-9]{1,3}\\.){3}[0-9]{1,3}",
    "((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])",
    "10\\.0\\.\\d+\\.\\d+",
    "192\\.168\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]+)?",
    "(\\d+\\.){3}\\d+",
    "[0-9.]+:9100",
    "v?[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.-]+)?",
    "v?\\d+\\.\\d+\\.\\d+(-[\\w.]+)?(\\+[\\w.]+)?",
    "1\\.2[0-9]\\..*",
    "([a-z0-9-]+\\.)+[a-z]+",
    "([a-z0-9]+(-[a-z0-9]+)*\\.)+[a-z]{2,}",
    "(.*\\.)?example\\.com",
    ".*\\.example\\.com(:\\d+)?",
    ".*foo.*|.*bar.*",
    ".*error.*|.*fail.*",
    "kube-.*|node-.*|etcd-.*|cert-.*",
    ".*-(prod|staging)-.*",
    "[a-z]+-[a-z]+-[a-z]+-[0-9]+",
    "[a-z0-9-]+-[a-z0-9]{9,10}-[a-z0-9]{5}",
    "(api|web|worker)-[0-9]+",
    "(?:us|eu|ap)-(?:east|west|south)-[0-9]",
    "[a-zA-Z_:][a-zA-Z0-9_:]*",
    "(foo|bar|baz)",
    "(?i)(error|warn|critical)",
    "([a-z]+,)*[a-z]+",
    "(\\w+=\\w+,)*\\w+=\\w+",
    "(\\.[a-z]+)+",
    "([a-z_]+)(/[a-z_]+)*",
    "/api/v[0-9]+/.*",
    "/(api|admin)/.+",
    "[^/]+/[^/]+",
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "(?:[0-9a-f]{2}:){5}[0-9a-f]{2}",
    "[0-9a-f]{7,40}",
    "(foo-\\d+|bar-\\d+)(,(foo-\\d+|bar-\\d+))*",
    "job-(\\d+)(-\\d+)?",
    "node[0-9]+\\.(dc1|dc2)\\.internal",
    "ip-\\d+-\\d+-\\d+-\\d+\\..*",
    ".+",
    ".*",
    "",
    "(|prod)",
    "(prod|)",
    "prod|",
    "(sda|sdb|nvme[0-9]n[0-9])[0-9]*",
    "(critical|warning|info)",
    "(?:my-)?service(-canary)?",
    "[a-z]+(_[a-z]+)*_total",
    ".*_(bucket|count|sum)",
    "(?:\\w+\\.)*\\w+",
    "([A-Za-z]+ )*[A-Za-z]+",
    "(\\d+)(ms|s|m|h)",
    "[a-z]{2}-[a-z]+-\\d{1}[a-z]?",
    "https?://[^/]+(/.*)?",
    "(abc|abd)",
    "(a|b)*c",
    "(x[0-9]|y[0-9])+",
    "(10|172|192)\\..*",
]

SLOW = [  # (pattern, the value that makes it slow)
    (".{0,1000}.{0,1000}.{0,1000}.{0,1000}x", "'a'*1000"),
    ("a{0,1000}a{0,1000}a{0,1000}b", "'a'*1000"),
    (".{0,1024}.{0,1024}.{0,1024}x", "'a'*1000"),
    (".*.*.*x", "'a'*1024"),
    (".*a.*a.*x", "'a'*1024"),
    (".*?a.*?a.*?x", "'a'*1024"),
    ("\\w*\\d*\\w*x", "'1'*1024"),
    ("(?i)(?:s|ſs)+x", "'s'*40"),
    ("(?i)(?:ſ|ss)+x", "'s'*40"),
    ("(?i)(?:k|\\u212ak)+x", "'k'*40"),
    ("(?i)(?:σ|ςσ)+x", "'σ'*40"),
    ("(?i)(?:i|ıi)+x", "'i'*40"),
    ("(?i)(?:µ|μµ)+x", "'µ'*40"),
    ("(.*)(.*)\\1\\2x", "'a'*1000"),
    ("(.*)(.*)(.*)\\3\\2\\1x", "'a'*300"),
    ("(.*)\\1*\\1*x", "'a'*1000"),
    (".*(?=.*.*x)", "'a'*1024"),
    ("(?=.*.*.*x).*", "'a'*1024"),
    (".*.*.*[a-z]{0,1000}x", "'a'*1024"),
    (".*.*.*.{0,30}x", "'a'*1024"),
    ("(?:ab)*(?:ab)*(?:ab)*x", "'ab'*512"),
    ("(?:ab)*?(?:ab)*?(?:ab)*?x", "'ab'*512"),
    ("\\d*?\\d*?\\d*?x", "'1'*1024"),
    ("\\d*\\d*\\d*[a-z]", "'1'*1024"),
    ("\\w*\\d*\\w*", "'1'*1023+'-'"),
    ("(.*)(.*)(.*)\\3\\2\\1x", "'a'*1024"),
    ("(?:.*,){1}.*.*x", "'a'*1024"),
    (".*.*.{0,100}x", "'a'*1024"),
    (".*.*[a-z]{0,50}[a-z]{0,50}x", "'a'*1024"),
    (".{0,300}.{0,300}.{0,300}.{0,300}x", "'a'*1024"),
    ("[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}x", "'a'*70"),
    ("(?:\\w{0,9}-){1}\\w{0,9}\\w{0,9}\\w{0,9}\\w{0,9}\\w{0,9}\\w{0,9}\\w{0,9}\\w{0,9}x", "'a'*80"),
    ("[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}[a-z]{0,10}x", "'a'*90"),
    ("\\w{0,20}\\w{0,20}\\w{0,20}\\w{0,20}\\w{0,20}\\w{0,20}-", "'a'*120"),
    ("(.*)(.*)\\2\\1x", "'a'*1024"),
    ("(.*)(.*)\\1\\2\\1\\2x", "'a'*1024"),
    ("(.*)(.*)(.*)\\1x", "'a'*1024"),
    ("(.{0,50})(.{0,50})(.{0,50})(.{0,50})x", "'a'*200"),
]


@pytest.mark.filterwarnings("ignore:Possible:FutureWarning")  # [[ and &&: the daemon ignores these (rules/_regex.py)
@pytest.mark.parametrize("pattern", COMMON)
def test_common_matchers_are_taken(pattern: str) -> None:
    compile_label_regex(pattern)


@pytest.mark.parametrize(("pattern", "value"), SLOW, ids=[p for p, _ in SLOW])
def test_patterns_whose_matching_time_explodes_are_refused(pattern: str, value: str) -> None:
    with pytest.raises(SlowRegex):
        compile_label_regex(pattern)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a|aa)*c", "more than 10^300 ways to backtrack"),  # Python's re: for ever on 60 a's
        (".*prod.*eu.*", "two matchers on one label"),  # the message says how to write it instead
        (r"(.*)\1x", "a backreference"),
        (".*(?=.*(?=.*x))", "a lookahead or lookbehind"),  # 0.16 s on 1 KB, for ever one level deeper
        ("(?:(?i:a)|A)*b", "more than 10^300 ways"),  # (?i:a) matches A: 3.5 s on 27 characters
        ("(?:(?i:k)|K)*x", "more than 10^300 ways"),  # and K (Kelvin) too
        ("(a)?(?(1)b|c)", "a conditional group"),
    ],
)
def test_the_refusal_says_why(pattern: str, reason: str) -> None:
    with pytest.raises(SlowRegex, match=reason.replace("^", "\\^")):
        compile_label_regex(pattern)


def test_a_posix_class_which_python_reads_as_a_set_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[:alpha:\] is a POSIX class, which Python's re does not read"):
        compile_label_regex("[[:alpha:]]+")  # Alertmanager: letters; Python's re: '[', ':', 'a', 'l', 'p', 'h'


def test_a_bad_regex_keeps_the_parser_message() -> None:
    with pytest.raises(ValueError, match="missing \\)"):
        compile_label_regex("(")
    with pytest.raises(ValueError, match="nested too deeply"):
        compile_label_regex("(" * 500 + ")" * 500)
    with pytest.raises(ValueError, match="longer than 1024 characters"):
        compile_label_regex("a" * 1025)
