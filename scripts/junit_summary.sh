#!/usr/bin/env bash
# Prints "<passed> <failed>" counted from a JUnit file (test cases, including steps).
# A missing or empty file counts as one failure: a run that produced no report proves nothing.
set -uo pipefail
file=${1:-.cache/junit.xml}
if [ ! -s "$file" ]; then echo "0 1"; exit 0; fi
python3 - "$file" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
passed = failed = 0
for case in root.iter("testcase"):
    if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
    elif case.find("skipped") is not None:
        failed += 1  # nothing is skipped on purpose: a skip is a suite that did not run
    else:
        passed += 1
if passed + failed == 0:
    failed = 1
print(passed, failed)
PY
