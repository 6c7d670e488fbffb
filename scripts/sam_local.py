"""Runs the SAM CLI with the local gateway's request conversion made faithful.

API Gateway (HTTP API) hands a function any request body: one that is not
text arrives base64-encoded with isBase64Encoded, and the function judges it.
SAM CLI's local gateway (aws-sam-cli 1.170.0, pinned in scripts/env.sh)
base64-encodes only the media types a template lists as binary, and an HTTP
API cannot list any; every other body it decodes as UTF-8, so a body that is
not UTF-8 (under `application/json`, say) fails that decoding and SAM answers
502 itself before any function runs. Here such a body's media type counts as
binary for that one request, so it reaches the function as it would through
the gateway. Everything else is SAM's own code.

usage: python scripts/sam_local.py ARGS...   (the same arguments as `sam`)
"""

import sys

from samcli.cli.main import cli
from samcli.local.apigw import local_apigw_service

_construct = local_apigw_service.construct_v2_event_http


def _construct_v2_event_http(flask_request, port, binary_types, *args, **kwargs):
    try:
        flask_request.get_data().decode("utf-8")
    except UnicodeDecodeError:
        binary_types = list(binary_types or []) + [flask_request.mimetype]
    return _construct(flask_request, port, binary_types, *args, **kwargs)


local_apigw_service.construct_v2_event_http = _construct_v2_event_http

if __name__ == "__main__":
    sys.argv[0] = "sam"
    sys.exit(cli())
