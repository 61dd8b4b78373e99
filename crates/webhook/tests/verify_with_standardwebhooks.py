"""Verify one webhook with the reference `standardwebhooks` package (PyPI).

Usage: python verify_with_standardwebhooks.py SECRET MSG_ID TIMESTAMP SIGNATURE_HEADER < BODY
Exit 0 and print "verified" when the reference library accepts the delivery,
exit 1 with the library's reason otherwise. Used by tests/python_interop.rs.
"""

import sys

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    secret, msg_id, timestamp, signature = sys.argv[1:]
    body = sys.stdin.buffer.read()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
    }
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError as e:
        print(f"rejected: {e}")
        return 1
    print("verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
