"""Validates patchline's exports against the official schemas: CycloneDX
1.6 with cyclonedx-python-lib's strict JSON validator (the schemas it
ships), SARIF 2.1.0 with jsonschema and the OASIS schema kept in
testdata/schemas, OpenVEX v0.2.0 with jsonschema and the schema of the
OpenVEX specification kept beside it. Prints one line per file: `ok FILE`
or `invalid FILE: REASON`.

usage: validate.py SARIF_SCHEMA (cyclonedx|sarif|openvex):FILE...
"""
import json
import pathlib
import sys

import jsonschema
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator


def main() -> None:
    sarif_schema = json.load(open(sys.argv[1], encoding="utf-8"))
    sarif = jsonschema.Draft4Validator(sarif_schema)
    cdx = JsonStrictValidator(SchemaVersion.V1_6)
    openvex_schema = pathlib.Path(sys.argv[1]).parent / "openvex_json_schema-0.2.0.json"
    openvex = jsonschema.Draft202012Validator(
        json.load(open(openvex_schema, encoding="utf-8"))
    )
    for arg in sys.argv[2:]:
        kind, path = arg.split(":", 1)
        text = open(path, encoding="utf-8").read()
        if kind == "cyclonedx":
            err = cdx.validate_str(text)
            reason = None if err is None else str(err)[:600]
        else:
            schema = openvex if kind == "openvex" else sarif
            errors = sorted(schema.iter_errors(json.loads(text)), key=str)
            reason = errors[0].message[:300] if errors else None
        if reason is not None:
            reason = " ".join(reason.split())  # one line per file
        print(f"ok {path}" if reason is None else f"invalid {path}: {reason}")


if __name__ == "__main__":
    main()
